#!/usr/bin/env bash
# /start.sh, compatible with tiangolo's: same variables, same log lines. Python decides (`python -m
# asgi_launcher start`: the switch from root, the app module, the config, every setting checked, the
# command) and execs the server, which then receives the container's signals. When there is a
# pre-start script, it comes back here with its plan: the script is sourced by this shell, so that
# its exports reach the server, which this shell then execs.
#   /start.sh                  Gunicorn with Uvicorn workers (one Uvicorn with PROCESS_MANAGER=uvicorn)
#   /start.sh --reload         the development server (/start-reload.sh)
#   /start.sh --prestart-only  the pre-start script alone (a Kubernetes init container, a migration job)
# tiangolo's was sh: `sh /start.sh` in someone's ENTRYPOINT must still work.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
set -euo pipefail

if [ -z "${ASGI_LAUNCHER_PLAN:-}" ]; then
  exec python -m asgi_launcher start "$0" "$@"  # a bad setting stops there: one line, status 2
fi
run_prestart='' json_logs='' server=()
eval "$ASGI_LAUNCHER_PLAN"
unset ASGI_LAUNCHER_PLAN

# The pre-start script is sourced, as in tiangolo's image, so that its exports reach the server, under
# plain `set -e` as there. With LOG_FORMAT=json its output becomes JSON lines, stdout and stderr apart.
wrappers=()
unwrap() {  # back to the container's stdout/stderr, once every wrapped line is out
  if [ ${#wrappers[@]} -gt 0 ]; then
    exec 1>&3 2>&4 3>&- 4>&-
    wait "${wrappers[@]}" || true
    wrappers=()
  fi
}
prestart_failed() {
  local status=$?
  echo "ERROR: pre-start script $PRE_START_PATH exited with status $status; the server was not started" >&2
  unwrap
  exit "$status"
}
if [ -n "$run_prestart" ]; then  # always, when Python came back here
  if [ -n "$json_logs" ]; then
    exec 3>&1 4>&2
    exec > >(python -m asgi_launcher json-lines "$$" stdout)
    wrappers+=($!)
    exec 2> >(python -m asgi_launcher json-lines "$$" stderr >&4)
    wrappers+=($!)
  fi
  trap prestart_failed EXIT
  exported_before=$(export -p)
  set +u +o pipefail
  # shellcheck source=/dev/null
  . "$PRE_START_PATH"
  set -u -o pipefail
  trap - EXIT
  unwrap
  # What it exported is checked too, and may change the command (WORKER_CLASS, PROCESS_MANAGER ...).
  if [ "$(export -p)" != "$exported_before" ]; then
    plan=$(python -m asgi_launcher plan "$$" --after-prestart "$@")
    eval "$plan"
  fi
fi

[ ${#server[@]} -gt 0 ] || exit 0  # --prestart-only
exec "${server[@]}"
