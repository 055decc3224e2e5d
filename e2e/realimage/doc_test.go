// Package realimage runs ephemera end to end on a real runner image: the
// Debian base (deploy/lxd/runner-base.sh) made into a runner image by
// `ephemera image build` with the stand-in runner tarball
// (deploy/lxd/standin-runner.sh), so that real systemd and cloud-init boot
// each container, run ephemera's user-data, start run.sh --jitconfig as
// user runner, and the runner runs ephemera's real pre-job hook
// (policy/hook/pre-job.sh) against the policy service.
package realimage
