// Command ephemera-standin-runner plays the GitHub Actions runner for
// ephemera's end-to-end tests and demo, against the GitHub stand-in
// (internal/githubfake). It is test and demo code, not part of the
// ephemera binary. One statically linked program serves two images:
//
//   - The runner tarball (deploy/lxd/standin-runner.sh, `make
//     standin-runner`): laid out like the real actions/runner release —
//     run.sh, config.sh, env.sh, bin/Runner.Listener — so that
//     `ephemera image build` installs it exactly as it installs the real
//     runner, on a real base with cloud-init. `run.sh --jitconfig X` execs
//     `bin/Runner.Listener run --jitconfig X`, which does what the real
//     runner does and no more: decodes the JIT config, comes online, takes
//     the job the broker hands it, runs the job-started hook named by
//     ACTIONS_RUNNER_HOOK_JOB_STARTED in the runner's .env with bash and
//     the runner's job environment (hook.go), fails the job when the hook
//     fails, and uploads the hook's output as the job's log. It has no
//     policy logic: ephemera's real pre-job hook decides.
//
//   - The busybox image ephemera-standin (deploy/lxd/standin-image.sh),
//     with no cloud-init, bash, curl or jq: baked in as /sbin/ephemera-run,
//     which the image's init runs at boot. It reads the cloud-init
//     user-data through /dev/lxd/sock, finds the JIT config and the hook's
//     settings in it, and performs the hook's request itself (devlxd.go).
//
// Both share the runner's conversation with the stand-in (session.go).
package main

import (
	"context"
	"fmt"
	"os"
)

// version is the runner version the stand-in reports, as the real
// Runner.Listener does with --version; the tarball's build stamps it
// (-ldflags -X main.version=…) from the one place it is pinned.
var version = "0.0.0-standin"

func main() {
	ctx := context.Background()
	var err error
	switch {
	case len(os.Args) == 1:
		err = runFromDevLXD(ctx)
	case os.Args[1] == "--version":
		fmt.Println(version)
		return
	case os.Args[1] == "run":
		err = listen(ctx, os.Args[2:])
	default:
		err = fmt.Errorf("usage: Runner.Listener run --jitconfig CONFIG | --version (or no arguments, as /sbin/ephemera-run)")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ephemera-standin-runner:", err)
		os.Exit(1)
	}
}
