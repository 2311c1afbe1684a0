#!/usr/bin/env bash
# From a fresh machine to the app answering on http://localhost:8000: the engine, compose and the
# base images where missing (scripts/host.sh), then `docker compose up`. Arguments go to compose,
# e.g. `scripts/up.sh -d --wait`; profiles as compose takes them: `COMPOSE_PROFILES=monitoring
# scripts/up.sh`. With Docker, compose and a registry there, `docker compose up` is the same thing.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/host.sh
. scripts/host.sh

ensure_engine
ensure_compose
# Every image compose builds, on an official base where a registry answers, else on a local one:
# the app on Python 3.13 (slim), the proxy (profile lb) and Prometheus (profile monitoring) on trixie.
PYTHON_IMAGE=${PYTHON_IMAGE:-$(base_image 3.13 slim)}
PROXY_BASE_IMAGE=${PROXY_BASE_IMAGE:-$(debian_image trixie)}
PROMETHEUS_BASE_IMAGE=${PROMETHEUS_BASE_IMAGE:-$PROXY_BASE_IMAGE}
export PYTHON_IMAGE PROXY_BASE_IMAGE PROMETHEUS_BASE_IMAGE
exec docker compose up "$@"
