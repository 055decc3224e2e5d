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
// or try: locales generated, ssh host keys removed and sshd off, apt's
// periodic jobs off (they would race a workflow's apt-get).
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
rm -f /etc/ssh/ssh_host_*
masked=
if command -v systemctl >/dev/null 2>&1; then
  for u in ssh.service ssh.socket sshd.service sshd-keygen.service apt-daily.timer apt-daily-upgrade.timer unattended-upgrades.service; do
    if [ -n "$(systemctl list-unit-files --no-legend "$u" 2>/dev/null)" ]; then systemctl mask "$u" >/dev/null 2>&1 && masked="$masked $u"; fi
  done
fi
[ -z "$masked" ] || done="$done masked$masked;"
echo "$done LANG=C.UTF-8; ssh host keys removed; cloud-init: datasource LXD, no default user, lean modules"`

func (b *builder) makeLean(ctx context.Context) (string, error) {
	if err := b.pushString(LeanCloudConfigPath, leanCloudConfig, 0o644); err != nil {
		return "", err
	}
	out, err := b.sh(ctx, leanScript)
	return strings.TrimSpace(out), err
}
