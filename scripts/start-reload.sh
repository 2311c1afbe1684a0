#!/usr/bin/env bash
# Development server: one Uvicorn process that restarts when a file under $APP_ROOT changes.
# Same app detection and pre-start script as start.sh. In the image this file is /start-reload.sh.
set -euo pipefail
exec "$(dirname "$0")/start.sh" --reload
