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
// and driver, and PoolStorage.Warning flags a pool that copies a whole disk
// per instance on dir (a virtual machine, or a template's copy).
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
//
// # Runner images
//
// [BuildImage] builds the image a pool names, through the same LXD API
// (ephemera image build). Step by step — each reported to
// ImageConfig.Progress, each failure a [*StepError] naming it, and the
// builder instance deleted whatever happens:
//
//  1. read runner tarball: a local file, or a URL downloaded to a
//     temporary file and checked against its SHA-256 (a URL without one
//     is refused); it must hold run.sh and bin/Runner.Listener at its top
//     level and nothing outside it.
//  2. find base image: a local alias or fingerprint of the build's type,
//     or remote:alias of [KnownRemotes], which LXD pulls itself.
//  3. launch builder: ephemera-build-<random>, key user.ephemera.builder
//     = the alias, user-data "users: []" (no default user taking uid
//     1000), and no NIC: every NIC of its profiles is masked (type none)
//     unless ImageConfig.Network names a network for it.
//  4. wait for boot: systemd's and cloud-init's first boot in the builder.
//  5. check tools: bash, curl, jq, cloud-init, sudo, tar and gzip, or a
//     [*MissingToolsError] naming the missing ones.
//  6. create user runner: uid 1000, group runner, when missing (refused if
//     uid 1000 is someone else's); passwordless sudo through
//     /etc/sudoers.d/90-ephemera-runner, as on GitHub-hosted runners.
//  7. install runner: the tarball pushed with LXD's file API, unpacked
//     into RunnerDir (replacing what was there), owned by runner.
//  8. read runner version: what bin/Runner.Listener --version prints, run
//     as runner from RunnerDir — the real runner prints its version so
//     (Runner.cs: command.Version); a stand-in runner tarball ships a
//     bin/Runner.Listener that answers --version the same way. It becomes
//     the image property ephemera.runner_version.
//  9. install runner dependencies: bin/installdependencies.sh when the
//     tarball has one and the builder has a default route; offline, the
//     libraries the runner loads (icu, ssl, zlib, krb5) must be there
//     already, and the step says it skipped the script, or fails naming
//     the missing ones.
//  10. make boot lean: what every runner's boot would otherwise repeat is
//     done now, and what it does not need is off —
//     /etc/cloud/cloud.cfg.d/99-ephemera.cfg pins the datasource to LXD,
//     creates no default user, generates no ssh host keys and runs only
//     the modules ephemera's user-data and a pool's snippet may use
//     (init: seed_random, bootcmd, write-files, growpart, resizefs,
//     set_hostname, update_hostname, update_etc_hosts, users-groups;
//     config: runcmd; final: package-update-upgrade-install,
//     write-files-deferred, scripts-*, final-message,
//     power-state-change; gone: locale, ssh, apt-configure, ntp, timezone
//     and the rest); en_US.UTF-8 is generated and LANG=C.UTF-8 set; the
//     time zone is UTC when unset; ssh host keys are removed and sshd,
//     apt's daily timers and unattended-upgrades masked;
//     systemd-firstboot is masked (the cleaned machine id makes every
//     boot a first boot, and Debian's would wait at the console);
//     systemd-networkd-wait-online only runs when the instance has a NIC
//     (runners reaching the host through proxy devices alone would wait 2
//     minutes for nothing); systemd-binfmt is masked in container images
//     (an unprivileged container cannot set it up).
//  11. clean cloud-init: cloud-init clean --logs --machine-id, the
//     builder's network config, apt's cache and /tmp.
//  12. stop builder: a clean shutdown, forced after a minute.
//  13. publish image: properties ephemera.alias (the alias family),
//     ephemera.runner_version, ephemera.built_at (RFC 3339, UTC),
//     ephemera.base, ephemera.base_fingerprint; compression as
//     ImageConfig.Compression says (the command uses none: on a dir
//     storage pool LXD unpacks the image for every instance).
//  14. move alias: created, or pointed at the new image (one atomic
//     update; instances already running are untouched).
//  15. delete builder.
//  16. prune old images: of the images whose ephemera.alias is the alias,
//     the newest ImageConfig.Keep stay, and so do the one the alias names
//     and any an instance in any project was created from
//     (volatile.base_image); the others are deleted.
//
// [RollbackImage] points the alias back at an older kept image, and
// [ListImages] shows them.
//
// Virtual-machine images take the same steps with Type
// "virtual-machine": the base must be a VM image (ubuntu:noble is both),
// and the builder's commands wait for lxd-agent. Only containers were
// built on the machine this was written on (no KVM).
package lxdprov
