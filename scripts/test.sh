#!/usr/bin/env bash
# The test command, on a fresh Debian machine as on a developer's: the host set-up (engine, wrk,
# both Python base images: scripts/host.sh), the test venv from the hashed lock, the linters, then
# every test (unit, real processes, real containers). Arguments go to pytest, e.g.
# `scripts/test.sh -m "not container"` for the tests that need no Docker. `.ci/run` calls this.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/host.sh
. scripts/host.sh

apt_install wrk wrk
apt_install python3 python3 python3-venv
ensure_engine
stop_dockerd() { if [ -n "$started_dockerd" ]; then as_root kill "$started_dockerd" || true; fi; }
trap stop_dockerd EXIT
PYTHON_IMAGE=${PYTHON_IMAGE:-$(base_image 3.13 trixie)}
PYTHON_IMAGE_311=${PYTHON_IMAGE_311:-$(base_image 3.11 bookworm)}
export PYTHON_IMAGE PYTHON_IMAGE_311

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install --quiet --disable-pip-version-check --require-hashes -r requirements-test.txt
.venv/bin/pip install --quiet --disable-pip-version-check --no-deps -e .
export PATH="$PWD/.venv/bin:$PATH"

ruff check .
ruff format --check --quiet .
shellcheck scripts/*.sh prestart.sh .ci/run deploy/*/*.sh
hadolint Dockerfile deploy/*/Dockerfile examples/*/Dockerfile.*
pytest "$@"
