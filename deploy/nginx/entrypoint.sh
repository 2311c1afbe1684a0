#!/bin/sh
# Use the certificate mounted at /etc/nginx/certs; without one, make a self-signed certificate so
# that the profile works out of the box (browsers will warn: mount a real one in production).
set -eu
certs=/etc/nginx/certs
if [ ! -f "$certs/tls.crt" ] || [ ! -f "$certs/tls.key" ]; then
  mkdir -p "$certs"
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=${TLS_COMMON_NAME:-localhost}" \
    -keyout "$certs/tls.key" -out "$certs/tls.crt" 2>/dev/null
  echo "entrypoint: no certificate mounted at $certs; using a self-signed one for ${TLS_COMMON_NAME:-localhost}"
fi
# ROOT_PATH (the replicas' too): serve the app under that prefix as well, stripped on the way in,
# so that the app, told its prefix, builds its links and docs with it.
prefix=${ROOT_PATH:-}
prefix=${prefix%/}
if [ -n "$prefix" ]; then
  cat > /etc/nginx/app-prefix.conf <<EOF
location = $prefix {
    return 301 $prefix/;
}
location $prefix/ {
    proxy_pass http://app/;
    include /etc/nginx/app-proxy.conf;
    proxy_set_header X-Forwarded-Prefix $prefix;
}
EOF
  echo "entrypoint: the app is also served under $prefix/"
else
  : > /etc/nginx/app-prefix.conf
fi
exec "$@"
