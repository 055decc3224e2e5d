#!/usr/bin/env bash
# Builds the stand-in runner (cmd/ephemera-standin-runner, statically
# linked) and the image ephemera-standin: the ephemera-test image with the
# stand-in at /sbin/ephemera-run, which init runs at boot. Imports it only
# when its content changed; touches no instance. Needs Go and a running LXD
# (make lxd-dev). Usage: standin-image.sh [ALIAS]
set -euo pipefail
alias_name=${1:-ephemera-standin}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
overlay=$(mktemp -d)
trap 'rm -rf "$overlay"' EXIT
mkdir -p "$overlay/sbin"
(cd "$root" && CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags '-s -w' -o "$overlay/sbin/ephemera-run" ./cmd/ephemera-standin-runner)
touch -d @1700000000 "$overlay/sbin/ephemera-run"
bash "$here/import-image.sh" "$alias_name" "$overlay"
