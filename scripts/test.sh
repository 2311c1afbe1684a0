#!/usr/bin/env bash
# The test command, on a fresh Debian machine as on a developer's: the host set-up (engine, wrk,
# the Python images of every tested tag: scripts/host.sh), the test venv from the hashed lock, the linters, then
# every test (tests/unit, tests/process: real processes, tests/container: real containers, and
# benchmarks/tests). Arguments go to pytest, e.g. `scripts/test.sh -m "not container"` for the tests
# that need no Docker, `scripts/test.sh tests/unit` for one tier. `.ci/run` calls this.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/host.sh
. scripts/host.sh

apt_install wrk wrk
apt_install python3 python3 python3-venv
# kubectl renders deploy/kubernetes offline (`kubectl kustomize`, no cluster): Debian's package.
apt_install kubectl kubectl || echo "kubectl: apt-get install kubectl failed; the kustomize test skips, saying so" >&2
ensure_engine
stop_dockerd() { if [ -n "$started_dockerd" ]; then as_root kill "$started_dockerd" || true; fi; }
trap stop_dockerd EXIT
# The Python images of the tags the compatibility tests run on (VARIANTS; the whole container suite
# runs on python3.13-slim), and the arm64 one of the emulated smoke test (ARM64_VARIANTS; empty: none).
VARIANTS=${VARIANTS:-python3.11 python3.11-slim python3.13 python3.13-slim python3.14-slim}
ARM64_VARIANTS=${ARM64_VARIANTS-python3.13-slim}
PYTHON_BASES=
for tag in python3.13-slim $VARIANTS; do
  python=${tag#python} variant=full
  [ "$python" != "${python%-slim}" ] && variant=slim
  PYTHON_BASES+=" $tag=$(base_image "${python%-slim}" "$variant")"
done
for tag in $ARM64_VARIANTS; do
  python=${tag#python} variant=full
  [ "$python" != "${python%-slim}" ] && variant=slim
  base_image "${python%-slim}" "$variant" arm64 >/dev/null
done
PYTHON_IMAGE=${PYTHON_IMAGE:-$(base_image 3.13 slim)}
export PYTHON_IMAGE PYTHON_BASES VARIANTS ARM64_VARIANTS

# The venv from the hashed lock, installed as listed (--no-deps: the lock is complete; nothing is
# resolved, whatever the pip), and checked whole.
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install --quiet --disable-pip-version-check --no-deps --require-hashes -r requirements-test.txt
.venv/bin/pip install --quiet --disable-pip-version-check --no-deps -e .
.venv/bin/pip check
export PATH="$PWD/.venv/bin:$PATH"

ruff check .
ruff format --check --quiet .
shellcheck scripts/*.sh scripts/hints/* prestart.sh .ci/run deploy/*/*.sh
hadolint Dockerfile deploy/*/Dockerfile examples/*/Dockerfile.*
pytest "$@"
