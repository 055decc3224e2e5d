// Package lxdprov runs ephemera's runner instances on LXD: it creates one
// ephemeral instance per runner, lists the instances of this deployment's
// pools and deletes them. [Provider] implements scaler.Provisioner; it is
// the only package that imports the LXD client, and the client's methods it
// calls are the small server interface in server.go.
//
// # Instances
//
// An instance is named after its runner (eph-<pool>-<suffix>), is
// ephemeral (LXD deletes it once it stops), has the pool's type, image,
// profiles, limits.cpu, limits.memory and root disk size, and carries these
// config keys: user.ephemera.pool, user.ephemera.job (the job id, 0 for a
// buffer runner), user.ephemera.created (RFC 3339, UTC) and
// cloud-init.user-data. List reads the instances whose user.ephemera.pool
// names one of the provider's pools, on every cluster member.
//
// # User-data
//
// The cloud-config comes from userdata.yaml.tmpl, embedded in the binary.
// It writes the pre-job hook to /opt/ephemera/pre-job.sh (0755), the hook's
// settings to /etc/ephemera/pre-job.env (0640, root:runner: exactly
// EPHEMERA_POLICY_URL=… and EPHEMERA_POLICY_TOKEN=… lines), appends
// ACTIONS_RUNNER_HOOK_JOB_STARTED=/opt/ephemera/pre-job.sh to
// /opt/actions-runner/.env, and, as its last runcmd entry, runs
// /opt/ephemera/run-once.sh /opt/actions-runner/run.sh --jitconfig <JIT>:
// the runner as user runner, then poweroff whatever its exit status. The
// image must hold the runner in /opt/actions-runner and a user and group
// "runner". GitHub's encoded_jit_config appears verbatim.
//
// Values are checked before they are rendered (the JIT config is base64,
// the token 64 hex characters, the policy URL a plain http(s) URL) and every
// value is written as an escaped YAML double-quoted string, so none can
// inject YAML or shell.
//
// A pool's user_data, a cloud-config mapping, is merged after ephemera's:
// keys ephemera does not set are added; lists ephemera sets too are joined,
// the pool's items after ephemera's, except runcmd, whose items run before
// the runner starts; any other key ephemera sets is refused at New.
package lxdprov
