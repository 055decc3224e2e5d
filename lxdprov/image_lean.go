package lxdprov

import (
	"context"
	_ "embed"
	"strings"
)

// leanCloudConfig is the image's /etc/cloud/cloud.cfg.d/99-ephemera.cfg:
// the LXD datasource only, no default user, no ssh host keys, and only
// the cloud-init modules a runner's boot needs (the package
// documentation lists them).
//
//go:embed imagefiles/99-ephemera.cfg
var leanCloudConfig string

// LeanCloudConfigPath is where the image holds leanCloudConfig.
const LeanCloudConfigPath = "/etc/cloud/cloud.cfg.d/99-ephemera.cfg"

// leanScript does at build time what a runner's boot would otherwise do
// or try: locales generated, the time zone UTC when unset, ssh host keys
// removed and sshd off, apt's periodic jobs off (they would race a
// workflow's apt-get), and systemd-firstboot off: the cleaned machine id
// makes every boot a first boot, and on Debian it would wait at the
// console for a locale, a time zone and a root password.
const leanScript = `set -e
done=
if command -v locale-gen >/dev/null 2>&1; then
  if [ -d /var/lib/locales/supported.d ]; then
    locale-gen en_US.UTF-8 >/dev/null
  elif [ -f /etc/locale.gen ]; then
    sed -i 's/^# *\(en_US.UTF-8 UTF-8\)/\1/' /etc/locale.gen
    grep -q '^en_US.UTF-8 UTF-8' /etc/locale.gen || echo 'en_US.UTF-8 UTF-8' >> /etc/locale.gen
    locale-gen >/dev/null
  fi
  done="$done locale en_US.UTF-8 generated;"
fi
echo 'LANG=C.UTF-8' > /etc/default/locale
[ -e /etc/localtime ] || ln -sf /usr/share/zoneinfo/Etc/UTC /etc/localtime
rm -f /etc/ssh/ssh_host_*
masked=
if command -v systemctl >/dev/null 2>&1; then
  for u in systemd-firstboot.service ssh.service ssh.socket sshd.service sshd-keygen.service apt-daily.timer apt-daily-upgrade.timer unattended-upgrades.service; do
    if [ -n "$(systemctl list-unit-files --no-legend "$u" 2>/dev/null)" ]; then systemctl mask "$u" >/dev/null 2>&1 && masked="$masked $u"; fi
  done
fi
if [ "$EPHEMERA_IMAGE_TYPE" = container ] && [ -n "$(systemctl list-unit-files --no-legend systemd-binfmt.service 2>/dev/null)" ]; then
  systemctl mask systemd-binfmt.service >/dev/null 2>&1 && masked="$masked systemd-binfmt.service"
fi
[ -z "$masked" ] || done="$done masked$masked;"
if [ -d /etc/systemd/system ]; then
  install -d /etc/systemd/system/systemd-networkd-wait-online.service.d
  cat > /etc/systemd/system/systemd-networkd-wait-online.service.d/ephemera.conf <<'UNIT'
# Written by ephemera image build: a runner without a NIC (reaching the
# host through LXD proxy devices only) does not wait for a network it
# will never have; with one, the boot waits for it as usual.
[Unit]
ConditionPathExistsGlob=/sys/class/net/e*
UNIT
  done="$done network-online not awaited without a NIC;"
fi
echo "$done LANG=C.UTF-8; ssh host keys removed; cloud-init: datasource LXD, no default user, lean modules"`

func (b *builder) makeLean(ctx context.Context) (string, error) {
	if err := b.pushString(LeanCloudConfigPath, leanCloudConfig, 0o644); err != nil {
		return "", err
	}
	out, err := b.shEnv(ctx, leanScript, map[string]string{"EPHEMERA_IMAGE_TYPE": b.cfg.Type})
	return strings.TrimSpace(out), err
}
