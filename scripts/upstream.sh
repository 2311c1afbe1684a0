#!/usr/bin/env bash
# Upstream drift, seen before a bump: the newest releases of uvicorn, uvicorn-worker, gunicorn, starlette
# and fastapi in a venv of their own (the rest from the lock), then each upstream suite against our
# class and against its own, and where the two differ; then the launcher's unit and process tests on
# those versions, which is where Starlette and FastAPI meet our code (tests/support/upstream.py).
# `scripts/upstream.sh --pinned` does the same on the locked versions (what CI runs); other arguments
# go to support/upstream.py (`--write docs/upstream.md` keeps the table, with its date).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${UPSTREAM_VENV:-${TMPDIR:-/tmp}/asgi-launcher-upstream}
newest=1
if [ "${1:-}" = "--pinned" ]; then
  newest=
  shift
  venv+=-pinned
fi
pip_quiet() { "$venv/bin/pip" install --quiet --disable-pip-version-check "$@"; }

[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
pip_quiet --no-deps --require-hashes -r requirements-test.txt
if [ -n "$newest" ]; then
  # Resolved on purpose: this venv is for finding what the newest releases change, never for shipping.
  pip_quiet --upgrade "uvicorn[standard]" uvicorn-worker gunicorn starlette fastapi
fi
pip_quiet --no-deps -e .
"$venv/bin/pip" check
PYTHONPATH=tests exec "$venv/bin/python" -m support.upstream "$@"
