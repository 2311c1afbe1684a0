#!/usr/bin/env bash
# From a fresh machine to the app answering on http://localhost:8000: the engine, compose and the
# base image where missing (scripts/host.sh), then `docker compose up`. Arguments go to compose,
# e.g. `scripts/up.sh -d --wait`. With Docker and compose already there, `docker compose up` is
# the same thing.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/host.sh
. scripts/host.sh

ensure_engine
ensure_compose
PYTHON_IMAGE=${PYTHON_IMAGE:-$(base_image 3.13 trixie)}
export PYTHON_IMAGE PROXY_BASE_IMAGE=${PROXY_BASE_IMAGE:-$PYTHON_IMAGE}
exec docker compose up "$@"
