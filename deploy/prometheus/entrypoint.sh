#!/bin/sh
# Prometheus reads no environment variables: the scrape target and interval go into its
# configuration here, from the compose file's environment.
set -eu
sed -e "s|@SCRAPE_INTERVAL@|${SCRAPE_INTERVAL:-15s}|g" \
    -e "s|@METRICS_TARGET@|${METRICS_TARGET:-app:9100}|g" \
    /etc/prometheus/prometheus.yml.in > /tmp/prometheus.yml
exec "$@"
