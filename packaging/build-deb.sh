#!/usr/bin/env bash
# Builds ephemera_<version>_<arch>.deb from a built binary with Debian's own
# dpkg-deb: a staged tree, no debhelper and no source package.
#   packaging/build-deb.sh BINARY VERSION OUTDIR
set -euo pipefail
bin=$1 version=$2 out=$3
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
arch=$(dpkg --print-architecture)

# A Debian version starts with a digit: v1.2.3-4-gabc → 1.2.3+4.gabc; a
# bare commit (no tag yet) → 0~git.<commit>.
deb_version=${version#v}
if [[ ! $deb_version =~ ^[0-9]+\.[0-9] ]]; then
  deb_version="0~git.$deb_version"
fi
deb_version=${deb_version//-/.}
deb_version=${deb_version/.g/+g}

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root=$stage/root
install -d -m 0755 "$root/DEBIAN" "$root/usr/bin" "$root/lib/systemd/system" "$root/etc/ephemera" \
  "$root/usr/share/ephemera" "$root/usr/share/doc/ephemera" "$root/usr/share/man/man1" \
  "$root/usr/share/lintian/overrides"

install -m 0755 "$bin" "$root/usr/bin/ephemera"
for unit in "$top"/deploy/systemd/*.service "$top"/deploy/systemd/*.timer; do
  sed 's#/usr/local/bin/ephemera#/usr/bin/ephemera#g' "$unit" >"$root/lib/systemd/system/$(basename "$unit")"
  chmod 0644 "$root/lib/systemd/system/$(basename "$unit")"
done
install -m 0644 "$top/deploy/config.example.yaml" "$root/etc/ephemera/config.yaml" # 0640 root:ephemera by postinst
install -m 0644 "$top/deploy/systemd/runner-image.env" "$root/usr/share/ephemera/runner-image.env" # copy to /etc/ephemera to build images
install -m 0755 "$top/policy/hook/pre-job.sh" "$root/usr/share/ephemera/pre-job.sh"
install -m 0644 "$top/deploy/grafana/ephemera.json" "$root/usr/share/ephemera/grafana-dashboard.json"
install -m 0644 "$top/deploy/prometheus/alerts.yml" "$root/usr/share/ephemera/prometheus-alerts.yml"
install -m 0644 "$top/deploy/config.example.yaml" "$root/usr/share/doc/ephemera/config.example.yaml"
install -m 0644 "$top/README.md" "$root/usr/share/doc/ephemera/README.md"
gzip -9n "$root/usr/share/doc/ephemera/README.md"
install -m 0644 "$here/debian/copyright" "$root/usr/share/doc/ephemera/copyright"
install -m 0644 "$here/debian/lintian-overrides" "$root/usr/share/lintian/overrides/ephemera"
gzip -9nc "$here/debian/ephemera.1" >"$root/usr/share/man/man1/ephemera.1.gz"
chmod 0644 "$root/usr/share/man/man1/ephemera.1.gz"

# The changelog of this native package: one entry for this build, dated by the commit.
date=$(git -C "$top" log -1 --format=%aD 2>/dev/null || date -R)
printf 'ephemera (%s) unstable; urgency=medium\n\n  * Built from %s.\n\n -- ephemera maintainers <ephemera@example.org>  %s\n' \
  "$deb_version" "$version" "$date" | gzip -9n >"$root/usr/share/doc/ephemera/changelog.gz"

for f in postinst prerm postrm; do
  install -m 0755 "$here/debian/$f" "$root/DEBIAN/$f"
done
install -m 0644 "$here/debian/conffiles" "$root/DEBIAN/conffiles"
(cd "$root" && find . -type f ! -path './DEBIAN/*' ! -path './etc/*' -printf '%P\0' | sort -z | xargs -0 md5sum) >"$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/md5sums"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$deb_version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" "$here/debian/control.in" >"$root/DEBIAN/control"

mkdir -p "$out"
deb="$out/ephemera_${deb_version}_${arch}.deb"
dpkg-deb --root-owner-group -Zgzip --build "$root" "$deb" >/dev/null
echo "$deb"
