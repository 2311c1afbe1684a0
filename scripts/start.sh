#!/usr/bin/env sh
# /start.sh, compatible with tiangolo's: same variables, same log lines. Python does it all (the
# settings, the switch from root, the pre-start script, the server), then becomes the server, which
# keeps this process's pid and gets the container's signals (asgi_launcher.start).
#   /start.sh                  Gunicorn with Uvicorn workers (one Uvicorn with PROCESS_MANAGER=uvicorn)
#   /start.sh --workers 3 ...  the same, with Gunicorn options on its command line
#   /start.sh --reload         the development server (/start-reload.sh)
#   /start.sh --prestart-only  the pre-start script alone (a Kubernetes init container, a migration job)
# tiangolo's was sh: `sh /start.sh` in someone's ENTRYPOINT must still work, and does (POSIX sh).
set -eu
exec python -m asgi_launcher start "$@"
