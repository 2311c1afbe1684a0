#! /usr/bin/env bash

# Let the DB start
python /app/app/backend_pre_start.py

# Run migrations
python /app/app/migrate.py

export APP_RELEASE=2024.1
