#!/bin/sh
# A stand-in for tiangolo's /start.sh (tiangolo/uvicorn-gunicorn), for the benchmark's `tiangolo`
# server: written for this harness from that script's documented behaviour, step for step, so that
# "start to first 200" compares our full start with his full start, not with his bare Gunicorn
# command. His image ran it with /bin/sh, Debian's dash, as here.
#   - the app module: app.main if <app dir>/app/main.py exists, else main if <app dir>/main.py does;
#     MODULE_NAME, VARIABLE_NAME (default app) and APP_MODULE override it
#   - the config: GUNICORN_CONF, else the first of <app dir>/gunicorn_conf.py,
#     <app dir>/app/gunicorn_conf.py, /gunicorn_conf.py (the harness sets GUNICORN_CONF to
#     benchmarks/tiangolo_conf.py: the repository's own gunicorn_conf.py is ours)
#   - the pre-start check: PRE_START_PATH (default <app dir>/prestart.sh) is sourced if it exists
#   - exec gunicorn -k WORKER_CLASS (default uvicorn.workers.UvicornWorker) -c the config, the module
# APP_DIR stands for his /app, which the harness points at the app's root (the repository).
# (`set -u` is this project's rule for its scripts; the pre-start script is sourced without it.)
set -eu

app_dir=${APP_DIR:-/app}
DEFAULT_MODULE_NAME=
if [ -f "$app_dir/app/main.py" ]; then
    DEFAULT_MODULE_NAME=app.main
elif [ -f "$app_dir/main.py" ]; then
    DEFAULT_MODULE_NAME=main
fi
MODULE_NAME=${MODULE_NAME:-$DEFAULT_MODULE_NAME}
VARIABLE_NAME=${VARIABLE_NAME:-app}
export APP_MODULE="${APP_MODULE:-$MODULE_NAME:$VARIABLE_NAME}"

if [ -f "$app_dir/gunicorn_conf.py" ]; then
    DEFAULT_GUNICORN_CONF=$app_dir/gunicorn_conf.py
elif [ -f "$app_dir/app/gunicorn_conf.py" ]; then
    DEFAULT_GUNICORN_CONF=$app_dir/app/gunicorn_conf.py
else
    DEFAULT_GUNICORN_CONF=/gunicorn_conf.py
fi
export GUNICORN_CONF="${GUNICORN_CONF:-$DEFAULT_GUNICORN_CONF}"
export WORKER_CLASS="${WORKER_CLASS:-uvicorn.workers.UvicornWorker}"

PRE_START_PATH=${PRE_START_PATH:-$app_dir/prestart.sh}
echo "Checking for script in $PRE_START_PATH"
if [ -f "$PRE_START_PATH" ]; then
    echo "Running script $PRE_START_PATH"
    set +u  # his script ran under plain `set -e`: the pre-start script gets that
    # shellcheck source=/dev/null
    . "$PRE_START_PATH"
    set -u
else
    echo "There is no script $PRE_START_PATH"
fi

exec gunicorn -k "$WORKER_CLASS" -c "$GUNICORN_CONF" "$APP_MODULE"
