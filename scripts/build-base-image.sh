#!/usr/bin/env bash
# Build a local Python base image from Debian packages, for hosts that cannot pull
# from a registry (air-gapped servers, TLS-intercepting networks, CI sandboxes).
#
#   scripts/build-base-image.sh [IMAGE_TAG]        default: local/python:3.13-slim
#
# Then build against it:  PYTHON_IMAGE=local/python:3.13-slim docker compose build
#
# Environment:
#   SUITE=trixie            Debian release (trixie = Python 3.13, bookworm = 3.11)
#   MIRROR=http://deb.debian.org/debian
#   TRUST_HOST_CA=1         copy the host's CA bundle into the image, so pip inside
#                           builds trusts the same (possibly intercepting) TLS gateway
#   FORCE=1                 rebuild even if the tag already exists
set -euo pipefail

tag=${1:-local/python:3.13-slim}
suite=${SUITE:-trixie}
mirror=${MIRROR:-http://deb.debian.org/debian}
host_ca=/etc/ssl/certs/ca-certificates.crt

if [ "${FORCE:-0}" != 1 ] && docker image inspect "$tag" >/dev/null 2>&1; then
  echo "base image $tag already exists (FORCE=1 rebuilds it)"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "debootstrap is missing: apt-get install -y debootstrap" >&2; exit 1; }

rootfs=$(mktemp -d /tmp/base-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT

debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
  "$suite" "$rootfs" "$mirror" >/dev/null

# Slim like the official images: no apt lists, docs or man pages.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
  "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
# The official images provide `python`; Debian only `python3`.
ln -sf python3 "$rootfs/usr/bin/python"

if [ "${TRUST_HOST_CA:-1}" = 1 ] && [ -f "$host_ca" ]; then
  cp "$host_ca" "$rootfs/etc/ssl/certs/ca-certificates.crt"
fi

tar -C "$rootfs" -c . | docker import \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  - "$tag" >/dev/null
echo "built base image $tag ($(docker run --rm "$tag" python3 --version))"
