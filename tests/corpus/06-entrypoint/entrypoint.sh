#!/bin/bash
set -e

echo "entrypoint: preparing $(id -u)"
mkdir -p /var/run/myapp

exec "$@"
