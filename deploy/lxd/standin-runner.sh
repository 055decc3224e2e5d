#!/usr/bin/env bash
# Builds the stand-in runner TARBALL: laid out like a GitHub Actions runner
# release (actions-runner-linux-<arch>-<version>.tar.gz: run.sh, config.sh,
# env.sh, bin/Runner.Listener at its top level),
# so that `ephemera image build --runner-tarball` installs it exactly as it
# installs the real runner. bin/Runner.Listener is cmd/ephemera-standin-runner,
# statically linked; `bin/Runner.Listener --version` prints the version, as
# the real one does. The tarball is reproducible (fixed times, owners and
# order): same sources, same bytes. It has no bin/installdependencies.sh:
# the real one installs the .NET runtime's libraries (libicu, …), which a
# static binary does not need, and `ephemera image build` checks for them
# when the script is present.
# Prints the tarball's path on stdout.
# Usage: standin-runner.sh [OUTDIR]   (default bin/)
# Environment: STANDIN_RUNNER_VERSION (default: the real runner's version as
# pinned in deploy/systemd/runner-image.env, the one place it is pinned,
# with -standin).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-$root/bin}
pinned=$(sed -n 's/^RUNNER_VERSION=//p' "$here/../systemd/runner-image.env")
[[ -n $pinned ]] || { echo "standin-runner: no RUNNER_VERSION in deploy/systemd/runner-image.env" >&2; exit 1; }
version=${STANDIN_RUNNER_VERSION:-$pinned-standin}
case $(uname -m) in
x86_64) arch=x64 ;;
aarch64) arch=arm64 ;;
*) arch=$(uname -m) ;;
esac

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cp -r "$here/standin-runner/." "$stage/"
mkdir -p "$stage/bin"
(cd "$root" && CGO_ENABLED=0 go build -trimpath -buildvcs=false \
	-ldflags "-s -w -X main.version=$version" \
	-o "$stage/bin/Runner.Listener" ./cmd/ephemera-standin-runner)
chmod 0755 "$stage" "$stage/bin" "$stage"/*.sh "$stage"/bin/*
mkdir -p "$out"
tarball=$out/actions-runner-linux-$arch-$version.tar.gz
tar --sort=name --mtime=@1700000000 --owner=0 --group=0 --numeric-owner \
	-C "$stage" -cf - . | gzip -n >"$tarball.tmp"
mv "$tarball.tmp" "$tarball"
echo "$tarball"
