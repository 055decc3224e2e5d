#!/usr/bin/env bash
# Builds the busybox test image (build-image.sh) with an optional overlay and
# imports it under ALIAS when the alias is missing or points at other
# content. It touches no instance, so it is safe while tests run.
# Usage: import-image.sh ALIAS [OVERLAY_DIR]
set -euo pipefail
alias_name=${1:?usage: import-image.sh ALIAS [OVERLAY_DIR]}
overlay=${2:-}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
say() { printf 'lxd-dev: %s\n' "$*"; }

# The image is built reproducibly (fixed times, owners and order), so its
# fingerprint changes only when its content does.
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
bash "$here/build-image.sh" "$build" "$overlay"
fingerprint=$(sha256sum "$build/image.tar" | cut -d' ' -f1)
current=$(lxc image info "$alias_name" 2>/dev/null | awk '/^Fingerprint:/ {print $2}' || true)
if [[ $current != "$fingerprint" ]]; then
	if ! lxc image info "$fingerprint" >/dev/null 2>&1; then
		say "importing image $alias_name (${fingerprint:0:12})"
		lxc image import "$build/image.tar" >/dev/null
	fi
	if [[ -n $current ]]; then
		lxc image alias delete "$alias_name" >/dev/null
		say "replacing image ${current:0:12}"
		lxc image delete "$current" >/dev/null 2>&1 || true
	fi
	lxc image alias create "$alias_name" "$fingerprint" >/dev/null
fi
say "image $alias_name is ${fingerprint:0:12}"
