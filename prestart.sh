#!/usr/bin/env bash
# Pre-start steps: start.sh sources this file once per container start, before Gunicorn starts any
# worker. Whatever it exports reaches the app; if a command fails, the container stops with its
# status and the server never starts. Replace the echo below with your own steps, for example:
#
#   python -m app.wait_for_db        # wait until the database accepts connections
#   alembic upgrade head             # run the migrations once, not once per worker
#
# In the image this file is /app/prestart.sh; PRE_START_PATH points elsewhere.
set -e
echo "Running inside ${PRE_START_PATH:-$0}, you could add migrations to this file, e.g. 'alembic upgrade head'"
