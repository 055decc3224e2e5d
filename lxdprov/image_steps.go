package lxdprov

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/canonical/lxd/shared/api"

	"github.com/ephemera-ci/ephemera/internal/logkey"
)

// RunnerUID is the runner user's uid and its group's gid (RunnerDir is
// where the runner lives).
const RunnerUID = 1000

// builderUserData is the builder's own cloud-config: no default user (on
// Ubuntu and Debian it would take uid 1000, the runner's).
const builderUserData = "#cloud-config\nusers: []\n"

// bootTimeout bounds the wait for the builder to run commands and for
// cloud-init's first boot in it.
const bootTimeout = 5 * time.Minute

// launch creates and starts the builder: not ephemeral (it is stopped to
// be published), with no NIC unless cfg.Network names one.
func (b *builder) launch(ctx context.Context) (string, error) {
	post, err := b.launchPost()
	if err != nil {
		return "", err
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	op, err := b.srv.CreateInstance(post)
	if err == nil {
		b.created = true // from here on, cleanup deletes whatever exists
		_, err = waitOp(ctx, b.srv, op)
	}
	if err != nil {
		return "", fmt.Errorf("create builder %s: %w", b.name, err)
	}
	if err := b.changeState(ctx, api.InstanceStatePut{Action: "start", Timeout: -1}); err != nil {
		return "", fmt.Errorf("start builder %s: %w", b.name, err)
	}
	inst, _, err := b.srv.GetInstance(b.name)
	if err != nil {
		return "", fmt.Errorf("look up builder %s: %w", b.name, err)
	}
	b.baseFP = inst.Config["volatile.base_image"]
	net := "no network"
	if b.cfg.Network != "" {
		net = "network " + b.cfg.Network
	}
	return fmt.Sprintf("%s %s from %s, %s", b.cfg.Type, b.name, short(b.baseFP), net), nil
}

// launchPost is the request that creates the builder.
func (b *builder) launchPost() (api.InstancesPost, error) {
	devices, err := b.builderNICs()
	if err != nil {
		return api.InstancesPost{}, err
	}
	return api.InstancesPost{
		Name:   b.name,
		Type:   api.InstanceType(b.cfg.Type),
		Source: b.source,
		InstancePut: api.InstancePut{
			Config: map[string]string{
				KeyBuilder:  b.cfg.Alias,
				KeyUserData: builderUserData,
			},
			Devices: devices,
		},
	}, nil
}

// waitBootScript waits for cloud-init's first boot in the builder, when
// the base has cloud-init, and prints its status.
const waitBootScript = `if command -v systemctl >/dev/null 2>&1; then
  systemctl is-system-running --wait >/dev/null 2>&1 || true
fi
if command -v cloud-init >/dev/null 2>&1; then
  cloud-init status --wait >/dev/null 2>&1
  cloud-init status 2>/dev/null | sed -n 's/^status: /cloud-init /p'
  if [ -f /run/cloud-init/result.json ] && command -v python3 >/dev/null; then
    python3 -c 'import json; e = json.load(open("/run/cloud-init/result.json"))["v1"]["errors"]; e and print("(errors: " + "; ".join(e) + ")")' 2>/dev/null || true
  fi
else
  echo "no cloud-init"
fi`

func (b *builder) waitBoot(ctx context.Context) (string, error) {
	if err := b.waitExec(ctx, bootTimeout); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, bootTimeout)
	defer cancel()
	out, err := b.sh(ctx, waitBootScript)
	return strings.ReplaceAll(out, "\n", " "), err
}

// requiredTools are what ephemera's user-data, the pre-job hook and the
// runner's scripts run, and what the following steps need.
var requiredTools = []string{"bash", "curl", "jq", "cloud-init", "sudo", "tar", "gzip"}

func (b *builder) checkTools(ctx context.Context) (string, error) {
	script := `for t in ` + strings.Join(requiredTools, " ") + `; do command -v "$t" >/dev/null 2>&1 || echo "$t"; done`
	out, err := b.sh(ctx, script)
	if err != nil {
		return "", err
	}
	if missing := strings.Fields(out); len(missing) > 0 {
		return "", &MissingToolsError{Tools: missing}
	}
	return strings.Join(requiredTools, ", ") + " present", nil
}

// createUserScript makes user runner (uid 1000, group runner, home
// /home/runner, bash) unless it exists, and gives it passwordless sudo.
const createUserScript = `set -e
if id -u runner >/dev/null 2>&1; then
  echo "user runner exists"
else
  if other=$(getent passwd 1000); then
    echo "uid 1000 belongs to user ${other%%:*}; the runner needs it" >&2; exit 3
  fi
  command -v useradd >/dev/null || { echo "useradd is missing" >&2; exit 3; }
  if ! getent group runner >/dev/null; then
    if getent group 1000 >/dev/null; then groupadd runner; else groupadd --gid 1000 runner; fi
  fi
  useradd --uid 1000 --gid runner --create-home --shell /bin/bash runner
  echo "created user runner"
fi
uid=$(id -u runner)
[ "$uid" = 1000 ] || { echo "user runner has uid $uid, not 1000" >&2; exit 3; }
install -d -m 0750 /etc/sudoers.d
printf 'runner ALL=(ALL) NOPASSWD:ALL\n' > /etc/sudoers.d/90-ephemera-runner
chmod 0440 /etc/sudoers.d/90-ephemera-runner
visudo -cf /etc/sudoers.d/90-ephemera-runner >/dev/null
grep -Eq '^[@#]includedir /etc/sudoers.d' /etc/sudoers || echo '@includedir /etc/sudoers.d' >> /etc/sudoers
sudo -u runner sudo -n true
echo "with passwordless sudo"`

func (b *builder) createUser(ctx context.Context) (string, error) {
	out, err := b.sh(ctx, createUserScript)
	return strings.ReplaceAll(out, "\n", " "), err
}

// tarballInBuilder is where the tarball is pushed, before unpacking.
const tarballInBuilder = "/root/ephemera-runner.tar.gz"

// unpackScript replaces RunnerDir with the tarball's content, owned by
// runner.
const unpackScript = `set -e
rm -rf ` + RunnerDir + `
install -d -o runner -g runner -m 0755 ` + RunnerDir + `
tar -xzf ` + tarballInBuilder + ` -C ` + RunnerDir + `
rm -f ` + tarballInBuilder + `
chown -R runner:runner ` + RunnerDir + `
test -x ` + RunnerDir + `/run.sh || chmod 0755 ` + RunnerDir + `/run.sh
du -sh ` + RunnerDir + ` | cut -f1`

func (b *builder) installRunner(ctx context.Context) (string, error) {
	f, err := os.Open(b.tarball)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if err := b.push(tarballInBuilder, f, 0o600); err != nil {
		return "", err
	}
	size, err := b.sh(ctx, unpackScript)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s in %s, owned by runner", size, RunnerDir), nil
}

// versionRE is what a runner version may look like: 2.321.0, 2.321.0-rc1.
var versionRE = regexp.MustCompile(`^[0-9][0-9A-Za-z.+-]{0,63}$`)

// ErrNoRunnerVersion: bin/Runner.Listener --version printed no version.
var ErrNoRunnerVersion = errors.New("bin/Runner.Listener --version printed no version")

// readVersion asks the runner its version, as the real runner answers:
// bin/Runner.Listener --version prints it (Runner.cs, command.Version),
// run as user runner from RunnerDir. Globalization-invariant mode lets
// it answer before its ICU dependency is installed.
func (b *builder) readVersion(ctx context.Context) (string, error) {
	r, err := b.exec(ctx, []string{RunnerDir + "/bin/Runner.Listener", "--version"}, execOpts{
		env: map[string]string{"HOME": "/home/runner", "USER": "runner", "DOTNET_SYSTEM_GLOBALIZATION_INVARIANT": "1"},
		uid: RunnerUID, gid: RunnerUID, cwd: RunnerDir,
	})
	if err != nil {
		return "", err
	}
	if !b.hasDiag { // the runner logs to _diag, even for --version
		if _, err := b.sh(ctx, "rm -rf "+RunnerDir+"/_diag"); err != nil {
			return "", err
		}
	}
	if r.Code != 0 {
		return "", fmt.Errorf("bin/Runner.Listener --version: %w", &ExitError{Code: r.Code, Stderr: lastLines(r.Stderr, 5)})
	}
	v := strings.TrimSpace(lastLines(r.Stdout, 1))
	if !versionRE.MatchString(v) {
		return "", fmt.Errorf("%w (got %q)", ErrNoRunnerVersion, v)
	}
	b.version = v
	return "runner " + v, nil
}

// installDepsScript runs the runner's bin/installdependencies.sh when
// the tarball has one and the builder has a default route; offline, it
// checks that the libraries the runner loads are there instead.
const installDepsScript = `set -e
deps=` + RunnerDir + `/bin/installdependencies.sh
if [ ! -f "$deps" ]; then echo "skipped: the tarball has no bin/installdependencies.sh"; exit 0; fi
online=
if awk 'NR > 1 && $2 == "00000000" { f = 1 } END { exit !f }' /proc/net/route 2>/dev/null; then online=yes; fi
if awk '$1 == "00000000000000000000000000000000" && $2 == "00" && $10 != "lo" { f = 1 } END { exit !f }' /proc/net/ipv6_route 2>/dev/null; then online=yes; fi
if [ -n "$online" ]; then
  bash "$deps" >/tmp/ephemera-installdependencies.log 2>&1 || { tail -n 20 /tmp/ephemera-installdependencies.log >&2; exit 1; }
  rm -f /tmp/ephemera-installdependencies.log
  echo "ran bin/installdependencies.sh"; exit 0
fi
missing=
for lib in libicuuc.so libssl.so libz.so libkrb5.so; do
  ldconfig -p | grep -q "$lib" || missing="$missing ${lib%.so}"
done
if [ -z "$missing" ]; then
  echo "skipped bin/installdependencies.sh: the builder is offline and the runner's libraries (icu, ssl, zlib, krb5) are present"; exit 0
fi
# Offline with libraries missing: the script may still manage (a local
# mirror, a stand-in that needs none); if it fails, say what is missing.
if bash "$deps" >/tmp/ephemera-installdependencies.log 2>&1; then
  rm -f /tmp/ephemera-installdependencies.log
  echo "ran bin/installdependencies.sh offline (the runner's libraries$missing were not there before)"; exit 0
fi
tail -n 5 /tmp/ephemera-installdependencies.log >&2
echo "the builder is offline (no default route): bin/installdependencies.sh failed, and the runner's libraries are missing:$missing (install them in the base image, or give the builder a network)" >&2
exit 3`

func (b *builder) installDeps(ctx context.Context) (string, error) {
	out, err := b.sh(ctx, installDepsScript)
	if err == nil {
		b.log.Info().Str("step", "install runner dependencies").Msg(out)
	}
	return out, err
}

// cleanScript forgets the builder's own boot, so that every instance of
// the image boots as a first boot: cloud-init's state and logs, the
// machine id, package caches.
const cleanScript = `set -e
if cloud-init clean --help 2>/dev/null | grep -q -- --machine-id; then
  cloud-init clean --logs --machine-id
else
  cloud-init clean --logs
fi
# An empty machine id: systemd makes a fresh one at every boot without
# treating it as a first boot (cloud-init 22.4 deletes the file, later
# versions write "uninitialized": both mean first boot, with presets
# applied and, on Debian, systemd-firstboot asking at the console).
: > /etc/machine-id
# The network config cloud-init wrote for the builder; it writes a runner's
# own at its first boot.
rm -f /etc/systemd/network/10-cloud-init-*.network /etc/netplan/50-cloud-init.yaml /etc/network/interfaces.d/50-cloud-init*
if command -v apt-get >/dev/null; then apt-get clean; fi
rm -rf /tmp/* /var/tmp/*
echo "cloud-init state, logs and machine id cleared"`

func (b *builder) cleanCloudInit(ctx context.Context) (string, error) {
	return b.sh(ctx, cleanScript)
}

// stop shuts the builder down cleanly (a minute's grace), then by force.
func (b *builder) stop(ctx context.Context) (string, error) {
	err := b.changeState(ctx, api.InstanceStatePut{Action: "stop", Timeout: 60})
	if err == nil {
		return "clean shutdown", nil
	}
	if ctx.Err() != nil {
		return "", err
	}
	b.log.Warn().Err(err).Str(logkey.Instance, b.name).Msg("clean shutdown failed; stopping by force")
	if ferr := b.changeState(ctx, api.InstanceStatePut{Action: "stop", Force: true, Timeout: -1}); ferr != nil {
		return "", fmt.Errorf("stop builder %s: %w (forced: %w)", b.name, err, ferr)
	}
	return "forced stop after: " + err.Error(), nil
}
