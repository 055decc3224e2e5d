#!/usr/bin/env bash
# Sets up a local LXD for ephemera's development and CI, idempotently:
#   - installs Debian's lxd and busybox-static when missing,
#   - starts the LXD daemon when it is not running and waits for it,
#   - creates the "default" dir storage pool and the default profile's root
#     disk when missing (and no network: instances here get no NIC),
#   - with LXD_STORAGE=btrfs, installs btrfs-progs and creates a loop-backed
#     btrfs storage pool (copy-on-write: instances are created several
#     times faster than on dir) for pools to name with storage_pool,
#   - makes LXD listen for HTTPS on 127.0.0.1:8443 when it listens nowhere,
#   - builds the tiny "ephemera-test" image and (re)imports it when it is
#     missing or its content changed,
#   - deletes instances named eph-* (and test projects t-xxxxxx, test
#     network ACLs t-acl-NNNNNN, test storage pools t-xxxxxx and test
#     images t-xxxxxx-img) left over by earlier test runs.
# Run it as root on a Debian machine; a second run changes nothing.
# It is meant for dev and CI machines only: it deletes every eph-* instance.
#
# Environment:
#   LXD_STORAGE            btrfs: also create the btrfs storage pool (dir, the
#                           default, creates nothing more).
#   EPHEMERA_STORAGE_POOL  that pool's name (default btrfs).
#   EPHEMERA_STORAGE_SIZE  its loop file's size (default 16GiB, sparse).
#   EPHEMERA_IMAGE_OVERLAY  a directory copied over the image's rootfs (for
#                           example one holding sbin/ephemera-run).
#   EPHEMERA_IMAGE_ALIAS    the image alias (default ephemera-test).
#   EPHEMERA_KEEP_INSTANCES set to 1 to keep leftover eph-* instances.
#   EPHEMERA_LXD_HTTPS      LXD's HTTPS listener when it has none
#                           (default 127.0.0.1:8443).
set -euo pipefail

alias_name=${EPHEMERA_IMAGE_ALIAS:-ephemera-test}
overlay=${EPHEMERA_IMAGE_OVERLAY:-}
https_address=${EPHEMERA_LXD_HTTPS:-127.0.0.1:8443}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
logfile=/var/log/lxd-ephemera.log

say() { printf 'lxd-dev: %s\n' "$*"; }
die() { printf 'lxd-dev: error: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "run me as root (I install packages and start the LXD daemon)"

# --- packages --------------------------------------------------------------
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'ok installed'; }
missing=()
for pkg in lxd lxd-client busybox-static jq curl; do
	installed "$pkg" || missing+=("$pkg")
done
if ((${#missing[@]})); then
	say "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- daemon ----------------------------------------------------------------
if ! lxc info >/dev/null 2>&1; then
	if [[ -d /run/systemd/system ]] && systemctl cat lxd.service >/dev/null 2>&1; then
		say "starting lxd.service"
		systemctl start lxd.service
	else
		say "starting the LXD daemon (log: $logfile)"
		# setsid: the daemon outlives this script and the shell that ran it;
		# started from /, not from the checkout it was asked from: LXD runs
		# rsync (a container copy on dir) in its own working directory,
		# which fails once that checkout is deleted.
		(cd / && setsid -f lxd --group root --logfile "$logfile" </dev/null >/dev/null 2>&1)
	fi
	lxd waitready --timeout 60 || die "LXD did not become ready within 60 s; see $logfile"
fi

# --- storage and profile ---------------------------------------------------
if ! lxc storage show default >/dev/null 2>&1; then
	say "creating the dir storage pool \"default\""
	lxc storage create default dir >/dev/null
fi
if ! lxc profile device get default root pool >/dev/null 2>&1; then
	say "adding the root disk to the default profile"
	lxc profile device add default root disk path=/ pool=default >/dev/null
fi
# No NIC: LXD bridges use private ranges, which this machine must not route.
for dev in $(lxc profile device list default); do
	if [[ $(lxc profile device get default "$dev" type) == nic ]]; then
		say "removing NIC device $dev from the default profile"
		lxc profile device remove default "$dev" >/dev/null
	fi
done

# --- btrfs storage pool (LXD_STORAGE=btrfs) --------------------------------
# A loop file under LXD's directory, sparse: it takes disk as instances
# write. The default profile keeps its root disk where it is; pools opt in
# with storage_pool.
ensure_btrfs_pool() { # name size
	local name=$1 size=$2 driver
	if ! installed btrfs-progs; then
		say "installing btrfs-progs"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends btrfs-progs >/dev/null
	fi
	if ! lxc storage show "$name" >/dev/null 2>&1; then
		say "creating the loop-backed btrfs storage pool \"$name\" ($size)"
		lxc storage create "$name" btrfs size="$size" >/dev/null
	fi
	driver=$(lxc storage list --format csv | awk -F, -v n="$name" '$1 == n {print $2}')
	[[ $driver == btrfs ]] || die "storage pool \"$name\" exists with driver \"$driver\", not btrfs (set EPHEMERA_STORAGE_POOL to another name)"
	say "storage pool \"$name\" is btrfs: set storage_pool: $name on a pool to use it"
}
case ${LXD_STORAGE:-dir} in
dir) ;;
btrfs) ensure_btrfs_pool "${EPHEMERA_STORAGE_POOL:-btrfs}" "${EPHEMERA_STORAGE_SIZE:-16GiB}" ;;
*) die "LXD_STORAGE must be dir or btrfs, got \"$LXD_STORAGE\"" ;;
esac

# --- HTTPS listener --------------------------------------------------------
# On loopback only, for the tests of lxdprov's HTTPS connection (lxd.url).
if [[ -z $(lxc config get core.https_address) ]]; then
	say "LXD listens on https://$https_address"
	lxc config set core.https_address "$https_address"
fi

# --- image -----------------------------------------------------------------
bash "$here/import-image.sh" "$alias_name" "$overlay"
fingerprint=$(lxc image info "$alias_name" | awk '/^Fingerprint:/ {print $2}')

# --- leftovers -------------------------------------------------------------
# Test runs that were killed leave instances eph-* behind, and projects t-*
# (named like lxdtest's pools) with theirs.
if [[ ${EPHEMERA_KEEP_INSTANCES:-0} != 1 ]]; then
	delete_leftovers() { # project
		for name in $(lxc list --project "$1" --format csv --columns n 2>/dev/null || true); do
			[[ $name == eph-* ]] || continue
			say "deleting leftover instance $name (project $1)"
			lxc delete --project "$1" --force "$name" >/dev/null 2>&1 || true
		done
	}
	delete_leftovers default
	for project in $(lxc project list --format csv 2>/dev/null | cut -d, -f1); do
		[[ $project =~ ^t-[0-9a-f]{6}$ ]] || continue
		delete_leftovers "$project"
		say "deleting leftover test project $project"
		lxc project delete "$project" >/dev/null 2>&1 || true
	done
	# lxdtest's storage pools (after the projects, whose instances used them)
	# and published images.
	for alias in $(lxc image alias list --format csv 2>/dev/null | cut -d, -f1); do
		[[ $alias =~ ^t-[0-9a-f]{6}-img$ ]] || continue
		say "deleting leftover test image $alias"
		lxc image delete "$alias" >/dev/null 2>&1 || true
	done
	for pool in $(lxc storage list --format csv 2>/dev/null | cut -d, -f1); do
		[[ $pool =~ ^t-[0-9a-f]{6}$ ]] || continue
		say "deleting leftover test storage pool $pool"
		lxc storage delete "$pool" >/dev/null 2>&1 || true
	done
	# lxdprov's ACL tests name their (unattached) ACLs t-acl-NNNNNN.
	for acl in $(lxc network acl list --format csv 2>/dev/null | cut -d, -f1); do
		[[ $acl =~ ^t-acl-[0-9]{6}$ ]] || continue
		say "deleting leftover test network ACL $acl"
		lxc network acl delete "$acl" >/dev/null 2>&1 || true
	done
fi

say "ready: LXD $(lxc version | awk '/Server version/ {print $3}'), image $alias_name (${fingerprint:0:12})"
