#!/usr/bin/env bash
# Start the app: validate the settings, run the pre-start script, then exec the server: Gunicorn with
# Uvicorn workers, or one Uvicorn process (PROCESS_MANAGER=uvicorn; --reload for development).
# --prestart-only stops after the pre-start script (a Kubernetes init container, a migration job).
# Compatible with tiangolo's /start.sh: same variables, same log lines. In the image: /start.sh.
set -euo pipefail

APP_ROOT=${APP_ROOT:-/app}

if [ -f "$APP_ROOT/app/main.py" ]; then
  default_module=app.main
elif [ -f "$APP_ROOT/main.py" ]; then
  default_module=main
else
  default_module=
fi
MODULE_NAME=${MODULE_NAME:-$default_module}
VARIABLE_NAME=${VARIABLE_NAME:-app}
export APP_MODULE=${APP_MODULE:-"$MODULE_NAME:$VARIABLE_NAME"}

if [ -f "$APP_ROOT/gunicorn_conf.py" ]; then
  default_conf=$APP_ROOT/gunicorn_conf.py
elif [ -f "$APP_ROOT/app/gunicorn_conf.py" ]; then
  default_conf=$APP_ROOT/app/gunicorn_conf.py
else
  default_conf=${BASE_GUNICORN_CONF:-/gunicorn_conf.py}
fi
export GUNICORN_CONF=${GUNICORN_CONF:-$default_conf}
export APP_ROOT

# LOG_FORMAT=json: this script's lines and the pre-start script's output go through a JSON wrapper
# until Gunicorn takes over stdout/stderr (its own lines are JSON by then).
json_wrapper=
log_format=${LOG_FORMAT:-text}
if [ "${log_format,,}" = json ]; then
  exec 3>&1 4>&2 > >(python -m asgi_launcher json-lines "$$") 2>&1
  json_wrapper=$!
fi
restore_output() {
  if [ -n "$json_wrapper" ]; then
    exec 1>&3 2>&4 3>&- 4>&-
    wait "$json_wrapper" || true  # every wrapped line is out before anything else writes
    json_wrapper=
  fi
}
trap restore_output EXIT

# Fail on a bad setting before the pre-start script (migrations) runs: one line, exit status 2.
python -m asgi_launcher check

# Sourced, as in tiangolo's image, so that its exports reach the server. It runs under plain `set -e`
# like there; the trap reports a failure (or an early `exit`) before the shell goes away.
run_prestart() {
  if [ -z "$PRE_START_PATH" ]; then
    echo "Pre-start step disabled (PRE_START_PATH is empty)"
    return
  fi
  echo "Checking for script in $PRE_START_PATH"
  if [ ! -f "$PRE_START_PATH" ]; then
    echo "There is no script $PRE_START_PATH"
    return
  fi
  echo "Running script $PRE_START_PATH"
  trap 'echo "ERROR: pre-start script $PRE_START_PATH exited with status $?; the server was not started" >&2; restore_output' EXIT
  local exported_before
  exported_before=$(export -p)
  set +u +o pipefail
  # shellcheck source=/dev/null
  . "$PRE_START_PATH"
  set -u -o pipefail
  trap restore_output EXIT
  # What it exported is validated too (Gunicorn would die on a bad WEB_CONCURRENCY with a traceback).
  if [ "$(export -p)" != "$exported_before" ]; then
    python -m asgi_launcher check
  fi
}
PRE_START_PATH=${PRE_START_PATH-$APP_ROOT/prestart.sh}
run_prestart

# Empty means unset here (compose passes `WEB_CONCURRENCY: ""`), but Gunicorn and Uvicorn read these
# two themselves and would fail on an empty value.
for name in WEB_CONCURRENCY FORWARDED_ALLOW_IPS; do
  if [ -z "${!name:-}" ]; then
    unset "$name"
  fi
done

restore_output
process_manager=${PROCESS_MANAGER:-gunicorn}
case "${1:-}" in
  --prestart-only) exit 0 ;;
  --reload) exec python -m asgi_launcher serve --reload ;;
esac
if [ "${process_manager,,}" = uvicorn ]; then
  exec python -m asgi_launcher serve
fi

# tiangolo passed -k unconditionally, which silently overrode a worker_class set in a custom config.
# Here an explicit WORKER_CLASS still wins, a config that sets worker_class is honoured, and any
# other config gets our Uvicorn worker (the same default as in asgi_launcher/settings.py) rather than
# Gunicorn's WSGI default.
worker_option=()
if [ -n "${WORKER_CLASS:-}" ] || ! grep -q '^worker_class[[:space:]]*=' "$GUNICORN_CONF"; then
  worker_option=(-k "${WORKER_CLASS:-asgi_launcher.workers.UvicornWorker}")
fi
exec gunicorn "${worker_option[@]}" -c "$GUNICORN_CONF" "$APP_MODULE"
