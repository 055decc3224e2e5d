#!/usr/bin/env bash
# Builds the ephemera-test image as a unified tarball, DIR/image.tar:
# a busybox rootfs whose init (image/sbin/init) brings lo up, then runs
# /sbin/ephemera-run when the image has one and powers the instance off when
# it exits.
# Usage: build-image.sh DIR [OVERLAY_DIR]
# The tarball is reproducible: same inputs, same bytes, same fingerprint.
set -euo pipefail

out=${1:?usage: build-image.sh DIR [OVERLAY_DIR]}
overlay=${2:-}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
busybox=/bin/busybox
root=$out/rootfs

[[ -x $busybox ]] || { echo "build-image: $busybox missing (apt-get install busybox-static)" >&2; exit 1; }

rm -rf "$root"
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,dev,proc,sys,tmp,run,root,var/log,opt/ephemera,home/runner}
chmod 1777 "$root/tmp"
cp "$busybox" "$root/bin/busybox"
# Our files first, then a link for every applet they do not replace (sbin/init
# is ours): copying over an absolute link would write through it to the host.
cp -r "$here/image/." "$root/"
if [[ -n $overlay ]]; then
	[[ -d $overlay ]] || { echo "build-image: overlay $overlay is not a directory" >&2; exit 1; }
	cp -r "$overlay/." "$root/"
fi
chmod 0755 "$root/sbin/init"
for applet in $("$busybox" --list-full); do
	[[ -e $root/$applet || -L $root/$applet ]] || ln -s /bin/busybox "$root/$applet"
done

arch=$(uname -m)
cat >"$out/metadata.yaml" <<META
architecture: $arch
creation_date: 1700000000
properties:
  os: busybox
  release: ephemera-test
  description: ephemera test image (busybox; init brings lo up, runs /sbin/ephemera-run)
META

tar --sort=name --mtime=@1700000000 --owner=0 --group=0 --numeric-owner \
	-C "$out" -cf "$out/image.tar" metadata.yaml rootfs
