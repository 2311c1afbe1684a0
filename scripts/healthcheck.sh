#!/usr/bin/env bash
# Container health: GET $HEALTHCHECK_PATH on the local server; healthy on any status below 500, so
# a 404 still proves that the server is up and the app loaded. An empty HEALTHCHECK_PATH disables it.
# Plain bash (/dev/tcp): slim images need no curl, and a probe costs a few milliseconds. The server
# knows these requests by their user agent on loopback: out of the access log unless
# ACCESS_LOG_PROBES=true, counted apart in the metrics (http_healthcheck_duration_seconds).
# In the image this file is /usr/local/bin/healthcheck.
set -euo pipefail

path=${HEALTHCHECK_PATH-/}
[ -n "$path" ] || exit 0

# The address the server really binds, written by it once it listens (asgi_launcher/probe.py).
dir=/dev/shm
[ -d "$dir" ] || dir=${TMPDIR:-/tmp}
file=${ASGI_SERVER_ADDRESS_FILE:-$dir/asgi-server.address}
if ! read -r host port < "$file" 2>/dev/null; then
  echo "healthcheck: no address in $file yet: the server has not started (or was not started by /start.sh)" >&2
  exit 1
fi
if [ "$host" = unix ]; then
  echo "healthcheck: cannot probe the unix socket $port; set HEALTHCHECK_PATH='' to disable" >&2
  exit 1
fi

exec 3<>"/dev/tcp/$host/$port"
printf 'GET %s HTTP/1.0\r\nHost: localhost\r\nUser-Agent: asgi-server-healthcheck\r\n\r\n' "$path" >&3
status=
read -r -t 5 _ status _ <&3 || true
case $status in
  [1-4][0-9][0-9]) exit 0 ;;
esac
echo "healthcheck: GET $path on $host:$port answered '${status:-nothing}'" >&2
exit 1
