#!/usr/bin/env bash
# Builds a real Debian base for runner images from the Debian archive with
# mmdebstrap and imports it into LXD as a container image under ALIAS
# (default ephemera-base-bookworm): systemd as init, cloud-init (which reads
# ephemera's user-data through LXD's /dev/lxd/sock datasource), and what
# ephemera's pre-job hook and `ephemera image build` need (bash, curl, jq,
# ca-certificates, sudo), plus locales (cloud-init's locale module fails
# without it). `ephemera image build --base ALIAS` turns it into a runner
# image.
#
# Cached by content: mmdebstrap's output is not byte-reproducible, so the
# key is a hash of the inputs (suite, packages, mirrors, architecture and
# this script), stored in the image's property ephemera.base_key. A run whose
# key matches the image under ALIAS does nothing and takes well under a
# second. EPHEMERA_BASE_REBUILD=1 rebuilds anyway (to pick up the archive's
# security updates). The previous image under ALIAS is deleted once the new
# one has the alias; instances already created from it keep their own copy.
#
# Needs root (mmdebstrap's root mode and LXD), a running LXD (make lxd-dev)
# and the Debian archive; installs mmdebstrap when missing.
# Usage: runner-base.sh [ALIAS]
set -euo pipefail

alias_name=${1:-ephemera-base-bookworm}
suite=bookworm
packages=systemd-sysv,cloud-init,curl,ca-certificates,sudo,jq,locales
mirrors=(
	"deb http://deb.debian.org/debian $suite main"
	"deb http://deb.debian.org/debian $suite-updates main"
	"deb http://deb.debian.org/debian-security $suite-security main"
)
arch=$(dpkg --print-architecture)
self=${BASH_SOURCE[0]}

say() { printf 'runner-base: %s\n' "$*"; }
die() { printf 'runner-base: error: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "run me as root (mmdebstrap builds the rootfs as root; LXD imports it)"
lxc info >/dev/null 2>&1 || die "LXD is not answering (make lxd-dev)"

key=$( {
	printf '%s\n' "$suite" "$packages" "$arch" "${mirrors[@]}"
	cat "$self"
} | sha256sum | cut -d' ' -f1)
key=${key:0:32}

current=$(lxc image info "$alias_name" 2>/dev/null | awk '/^Fingerprint:/ {print $2}' || true)
if [[ -n $current && ${EPHEMERA_BASE_REBUILD:-} != 1 ]]; then
	have=$(lxc image get-property "$current" ephemera.base_key 2>/dev/null || true)
	if [[ $have == "$key" ]]; then
		say "image $alias_name is ${current:0:12}, up to date (key ${key:0:12})"
		exit 0
	fi
fi

if ! command -v mmdebstrap >/dev/null 2>&1; then
	say "installing mmdebstrap"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends mmdebstrap >/dev/null
fi

work=$(mktemp -d /var/tmp/ephemera-base.XXXXXX)
trap 'rm -rf "$work"' EXIT
start=$(date +%s)
say "building $suite ($arch) with $packages (mmdebstrap, key ${key:0:12})"
# What every boot of an instance would otherwise do or wait for is settled
# here, once (mmdebstrap drops the package lists itself):
#  - the hostname comes from LXD; /etc/machine-id is empty, so systemd
#    makes a fresh one at each boot without treating it as a first boot;
#  - systemd-firstboot is masked: on a first boot (no /etc/machine-id, as
#    `cloud-init clean --machine-id` leaves an image) Debian's unit prompts
#    on the console for a locale, a time zone and a root password, and
#    the boot waits for an answer forever;
#  - time zone UTC; the locale en_US.UTF-8 (cloud-init's default on
#    Debian) generated and set, so cloud-init's locale module has nothing
#    to do (without it, update-locale fails and cloud-init reports an error);
#  - no default cloud user: cloud-init would create "debian" with uid
#    1000, the uid runner images give their runner user;
#  - systemd-networkd enabled, for the DHCP on eth0 that cloud-init's
#    fallback network configuration asks of it (a runner's NIC in
#    production); systemd-networkd-wait-online masked: cloud-init's network
#    stage waits for it, and with no NIC (the tests here) it waited its full
#    2 minutes; ephemera's datasource is /dev/lxd/sock, and the runner
#    retries until it reaches GitHub;
#  - systemd-binfmt masked: it fails in an unprivileged container.
mmdebstrap --quiet --variant=apt --architectures="$arch" \
	--include="$packages" \
	--customize-hook='rm -f "$1/etc/hostname"; : >"$1/etc/machine-id"' \
	--customize-hook='ln -sf /dev/null "$1/etc/systemd/system/systemd-firstboot.service"' \
	--customize-hook='ln -sf /usr/share/zoneinfo/Etc/UTC "$1/etc/localtime"; echo Etc/UTC >"$1/etc/timezone"' \
	--customize-hook='echo "en_US.UTF-8 UTF-8" >"$1/etc/locale.gen"; chroot "$1" locale-gen >/dev/null; chroot "$1" update-locale LANG=en_US.UTF-8' \
	--customize-hook='printf "# ephemera runner base: no default user (runner images add their own)\nusers: []\n" >"$1/etc/cloud/cloud.cfg.d/10-ephemera-base.cfg"' \
	--customize-hook='chroot "$1" systemctl enable systemd-networkd.service >/dev/null 2>&1' \
	--customize-hook='for u in systemd-networkd-wait-online systemd-binfmt; do ln -sf /dev/null "$1/etc/systemd/system/$u.service"; done' \
	"$suite" "$work/rootfs.tar" "${mirrors[@]}"
built=$(date +%s)

cat >"$work/metadata.yaml" <<META
architecture: $(uname -m)
creation_date: $built
properties:
  os: debian
  release: $suite
  description: ephemera runner base (Debian $suite, systemd, cloud-init; $packages)
  ephemera.base_key: "$key"
META
tar -C "$work" -cf "$work/meta.tar" metadata.yaml

say "importing into LXD as $alias_name ($(du -m "$work/rootfs.tar" | cut -f1) MB rootfs)"
out=$(lxc image import "$work/meta.tar" "$work/rootfs.tar" 2>&1) || die "lxc image import: $out"
fingerprint=$(sed -n 's/.*[Ff]ingerprint: *\([0-9a-f]\{64\}\).*/\1/p' <<<"$out" | head -n1)
[[ -n $fingerprint ]] || die "lxc image import did not print a fingerprint: $out"
if [[ -n $current ]]; then
	lxc image alias delete "$alias_name" >/dev/null
fi
lxc image alias create "$alias_name" "$fingerprint" >/dev/null
if [[ -n $current && $current != "$fingerprint" ]]; then
	say "deleting the previous image ${current:0:12}"
	lxc image delete "$current" >/dev/null 2>&1 || true
fi
say "image $alias_name is ${fingerprint:0:12}: mmdebstrap $((built - start)) s, import $(($(date +%s) - built)) s"
