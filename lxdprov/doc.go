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
// # Storage and templates
//
// A pool's storage_pool places its instances' root disks on that LXD
// storage pool (it must exist); Storage reports each pool's storage pool
// and driver, and PoolStorage.Warning flags a virtual-machine pool on dir.
//
// A container pool with template: true has its instances copied from a
// template instance, eph-tpl-<pool>-<fingerprint 12>, instead of created
// from the image: Run builds it from the image the pool's alias points to
// (created with the pool's profiles and devices, started once — LXD shifts
// its rootfs to the containers' id map at that first start, which a copy
// then skips —, reset by a script run inside it: cloud-init clean --logs,
// /etc/machine-id emptied, the saved random seed removed, where the image
// has them; an image whose init stops by itself is checked to carry
// neither a machine id nor a cloud-init instance), stops it, and marks it
// ready (user.ephemera.template-ready). Templates carry
// user.ephemera.template (their pool) and user.ephemera.template-image
// (their fingerprint), never user.ephemera.pool, so List never shows them;
// copies set those keys to "". Create copies the ready template only when
// it was made from the image the alias points to now; otherwise, and when
// a copy fails for any reason but the name being taken, it creates from
// the image and asks Run to sync. Run deletes a pool's templates of
// earlier images once the new one is ready, and rebuilds one whose build
// was abandoned (not ready 5 minutes after its creation). Several scaler
// replicas may run it on one project: the name is derived from pool and
// image, so one builds and the others find it.
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
