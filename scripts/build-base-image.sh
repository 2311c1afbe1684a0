#!/usr/bin/env bash
# Build a stand-in for the official python image from Debian packages, for hosts that cannot pull
# from a registry (air-gapped servers, TLS-intercepting networks, CI sandboxes).
#
#   scripts/build-base-image.sh PYTHON [VARIANT] [ARCH]     e.g. 3.13 slim, 3.11 full, 3.14 slim arm64
#
# makes local/python:3.13-slim, local/python:3.11, local/python:3.14-slim-arm64 ... Python comes with
# the Debian release that ships it: 3.11 bookworm, 3.13 trixie, 3.14 forky; no Debian release has
# 3.12, which exists only as the official image. `full` adds what the official non-slim image
# (buildpack-deps) has for building sdists: gcc, g++, make, autotools, git, curl and the usual -dev
# headers (not ImageMagick's). `arm64` needs qemu-user-static with binfmt (Debian's packages).
#
# Environment:
#   MIRROR           the Debian mirror; default: the first one in this host's apt sources
#   TRUST_HOST_CA=1  copy the host's CA bundle into the image, so pip inside builds trusts the same
#                    (possibly intercepting) TLS gateway as the host
#   FORCE=1          rebuild even if the tag already exists
set -euo pipefail

python=${1:?usage: build-base-image.sh PYTHON [slim|full] [amd64|arm64]}
variant=${2:-slim}
arch=${3:-$(dpkg --print-architecture)}
case $python in
  3.11) suite=bookworm ;;
  3.13) suite=trixie ;;
  3.14) suite=forky ;;
  3.12) echo "Python 3.12 is in no Debian release: build it FROM the official python:3.12 image, where a registry answers" >&2; exit 2 ;;
  *) echo "no Debian release ships Python '$python': expected 3.11, 3.13 or 3.14" >&2; exit 2 ;;
esac
case $variant in
  slim) suffix=-slim ;;
  full) suffix= ;;
  *) echo "VARIANT '$variant' is not valid: expected slim or full" >&2; exit 2 ;;
esac
tag=local/python:$python$suffix
[ "$arch" = "$(dpkg --print-architecture)" ] || tag=$tag-$arch
host_ca=/etc/ssl/certs/ca-certificates.crt

if [ "${FORCE:-0}" != 1 ] && docker image inspect "$tag" >/dev/null 2>&1; then
  echo "base image $tag already exists (FORCE=1 rebuilds it)" >&2
  exit 0
fi
command -v debootstrap >/dev/null || { echo "debootstrap is missing: apt-get install -y debootstrap" >&2; exit 1; }

# The host's own mirror: a deb822 URIs line, else a one-line `deb URI suite` entry.
host_mirror() {
  local found
  found=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  [ -n "$found" ] || found=$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /:\/\//) {print $i; exit}}' \
    /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true)
  echo "$found"
}
mirror=${MIRROR:-$(host_mirror)}
[ -n "$mirror" ] || { echo "no Debian mirror in this host's apt sources: set MIRROR" >&2; exit 1; }

packages=python3,python3-venv,ca-certificates
if [ "$variant" = full ]; then
  packages+=,python3-dev,build-essential,autoconf,automake,libtool,pkg-config,git,curl,wget,procps
  packages+=,file,patch,unzip,xz-utils,bzip2,libffi-dev,libssl-dev,zlib1g-dev,libbz2-dev,liblzma-dev
  packages+=,libsqlite3-dev,libreadline-dev,libncurses-dev,libxml2-dev,libxslt1-dev,libyaml-dev
  packages+=,libjpeg-dev,libpng-dev,libwebp-dev,libpq-dev,default-libmysqlclient-dev,libgdbm-dev
  packages+=,libcurl4-openssl-dev,libkrb5-dev,libgmp-dev,libevent-dev,libglib2.0-dev
fi
# Debian's debootstrap learns a new release's name late; its `sid` script fits testing too.
script=/usr/share/debootstrap/scripts/$suite
[ -e "$script" ] || script=/usr/share/debootstrap/scripts/sid

rootfs=$(mktemp -d /tmp/base-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
echo "building $tag: Debian $suite ($arch, $variant) from $mirror" >&2
debootstrap --arch="$arch" --variant=minbase --include="$packages" "$suite" "$rootfs" "$mirror" "$script" >/dev/null

# A mirror frozen in time (a snapshot) serves a testing release's Release file past its Valid-Until,
# which apt in the image would refuse: such a stand-in does not check it (a current mirror keeps it).
valid_until=$(sed -n 's/^Valid-Until: //p' "$rootfs"/var/lib/apt/lists/*Release 2>/dev/null | head -1)
if [ -n "$valid_until" ] && [ "$(date -d "$valid_until" +%s)" -lt "$(date +%s)" ]; then
  echo "the mirror's $suite Release expired on $valid_until: the image's apt will not check Valid-Until" >&2
  echo 'Acquire::Check-Valid-Until "false";' >"$rootfs/etc/apt/apt.conf.d/99-frozen-mirror"
fi
# Slim like the official images: no apt lists, docs or man pages.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
  "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
# As in the official images: apt keeps no package caches in the layers of derived images.
cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
# The official images provide `python`; Debian only `python3`.
ln -sf python3 "$rootfs/usr/bin/python"

if [ "${TRUST_HOST_CA:-1}" = 1 ] && [ -f "$host_ca" ]; then
  cp "$host_ca" "$rootfs/etc/ssl/certs/ca-certificates.crt"
fi

tar -C "$rootfs" -c . | docker import --platform "linux/$arch" \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  - "$tag" >/dev/null
echo "built base image $tag ($(docker run --rm "$tag" python3 --version))" >&2
