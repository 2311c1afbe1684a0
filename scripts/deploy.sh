#!/usr/bin/env bash
# Deploy, update or roll back the Swarm stack of deploy/swarm/stack.yml; run it on a manager node.
#
#   IMAGE=registry.example.com/app:1.4.2 TLS_CERT=tls.crt TLS_KEY=tls.key scripts/deploy.sh
#       creates the stack, or rolls every task over to IMAGE one at a time (start-first), and waits:
#       exit 0 once the update completed, 1 if Swarm rolled it back (the old version kept serving)
#   scripts/deploy.sh rollback
#       back to the app's spec before the last deploy (once: a second rollback undoes the first)
#
# Variables: STACK (default asgi), IMAGE, TLS_CERT, TLS_KEY (PEM files), DEPLOY_TIMEOUT (seconds,
# default 600), RESOLVE_IMAGE (always: pin IMAGE's digest from its registry; never: images loaded
# into each node by hand), and the stack's own: PROXY_IMAGE, REPLICAS, HTTPS_PORT, HTTP_PORT, ...
#
# Why not `docker stack deploy --detach=false`: it exited 0 here when the update was rolled back,
# and the 20.10 client does not have it.
set -euo pipefail

STACK=${STACK:-asgi}
STACK_FILE=${STACK_FILE:-$(cd "$(dirname "$0")/.." && pwd)/deploy/swarm/stack.yml}
DEPLOY_TIMEOUT=${DEPLOY_TIMEOUT:-600}

fail() {
  echo "ERROR: $*" >&2
  exit 2
}

# The update state of a service, its start time and message (empty when none is under way).
update_status() {
  docker service inspect -f \
    '{{if .UpdateStatus}}{{.UpdateStatus.State}}|{{.UpdateStatus.StartedAt}}|{{.UpdateStatus.Message}}{{end}}' "$1"
}

# Whether every replica of a service is running ("2/2" in docker service ls).
replicas_running() {
  local counts
  counts=$(docker service ls --filter "id=$(docker service inspect -f '{{.ID}}' "$1")" --format '{{.Replicas}}')
  [[ $counts =~ ^([0-9]+)/([0-9]+) ]] && [ "${BASH_REMATCH[1]}" = "${BASH_REMATCH[2]}" ]
}

# Wait until SERVICE reaches the update state WANTED (completed, or rollback_completed after a
# rollback) with every replica running. PENDING=1: an update is due, so no state yet means "not
# started" (Swarm clears the state on every deploy and sets it when it starts an update); 15 s
# without one means that the change left the running tasks valid (a placement constraint they meet).
wait_service() {
  local service=$1 wanted=$2 pending=$3 started=$SECONDS status state message reason why=
  while [ $SECONDS -lt $((started + DEPLOY_TIMEOUT)) ]; do
    status=$(update_status "$service")
    state=${status%%|*}
    message=${status##*|}
    case $state in
      "")
        if { [ "$pending" = 0 ] || [ $SECONDS -gt $((started + 15)) ]; } && replicas_running "$service"; then
          return 0
        fi ;;
      "$wanted")
        if replicas_running "$service"; then return 0; fi ;;
      updating) ;;
      rollback_started) why=${why:-$message} ;;
      rollback_completed)
        # Why: the error of a task of the release that failed; its tasks that were stopped without
        # one never got healthy. Else what Swarm said when it started the rollback.
        reason=$(docker service ps "$service" --no-trunc --format '{{.Image}}\t{{.Error}}' |
          awk -F '\t' -v image="${IMAGE:-}" '
            $1 == image || index($1, image "@") == 1 { if ($2 != "") { print $2; found = 1; exit } seen = 1 }
            END { if (!found && seen) print "none of its tasks got healthy" }')
        echo "ERROR: $service: the update to ${IMAGE:-} failed and was rolled back (${reason:-${why:-$message}})" >&2
        return 1 ;;
      *)
        echo "ERROR: $service: update $state ($message); see docker service ps $service" >&2
        return 1 ;;
    esac
    sleep 1
  done
  echo "ERROR: $service did not converge within ${DEPLOY_TIMEOUT}s (update: ${state:-none}); see docker service ps $service" >&2
  return 1
}

image_of() {
  docker service inspect -f "{{if .$2}}{{.$2.TaskTemplate.ContainerSpec.Image}}{{end}}" "$1"
}

check_manager() {
  [ "$(docker info -f '{{.Swarm.ControlAvailable}}' 2>/dev/null)" = true ] ||
    fail "this Docker engine is not a swarm manager: run 'docker swarm init' first, or run this on a manager"
}

deploy() {
  [ -n "${IMAGE:-}" ] || fail "IMAGE is not set: the app image to deploy, e.g. IMAGE=registry.example.com/app:1.4.2"
  for name in TLS_CERT TLS_KEY; do
    [ -n "${!name:-}" ] || fail "$name is not set: the proxy's certificate (TLS_CERT) and key (TLS_KEY), PEM files"
    [ -r "${!name}" ] || fail "$name='${!name}' is not a readable file"
  done
  case ${RESOLVE_IMAGE:=always} in
    always | changed | never) ;;
    *) fail "RESOLVE_IMAGE='$RESOLVE_IMAGE' is not valid: expected always, changed or never" ;;
  esac
  check_manager
  # Secrets are immutable: name them by content, so that a new certificate is a new secret.
  TLS_CERT=$(realpath "$TLS_CERT")
  TLS_KEY=$(realpath "$TLS_KEY")
  TLS_CERT_SECRET=${STACK}_tls_crt_$(sha256sum "$TLS_CERT" | cut -c1-12)
  TLS_KEY_SECRET=${STACK}_tls_key_$(sha256sum "$TLS_KEY" | cut -c1-12)
  export TLS_CERT TLS_KEY TLS_CERT_SECRET TLS_KEY_SECRET

  # What the tasks run, before and after: a difference means an update is due.
  local services=("${STACK}_app" "${STACK}_proxy") before=() service i pending
  for service in "${services[@]}"; do
    before+=("$(docker service inspect -f '{{json .Spec.TaskTemplate}}' "$service" 2>/dev/null || true)")
  done
  docker stack deploy --with-registry-auth --resolve-image "$RESOLVE_IMAGE" -c "$STACK_FILE" "$STACK"
  for i in "${!services[@]}"; do
    service=${services[$i]}
    pending=0
    if [ -n "${before[$i]}" ] && [ "${before[$i]}" != "$(docker service inspect -f '{{json .Spec.TaskTemplate}}' "$service")" ]; then
      pending=1
    fi
    wait_service "$service" completed "$pending" || exit 1
    echo "$service: $(image_of "$service" Spec), all replicas running"
  done
}

rollback() {
  check_manager
  local service=${STACK}_app
  [ -n "$(image_of "$service" PreviousSpec)" ] ||
    fail "$service has no earlier spec to roll back to (after an automatic rollback, or never updated); deploy the IMAGE you want instead"
  docker service rollback --detach --quiet "$service" >/dev/null
  wait_service "$service" rollback_completed 1 || exit 1
  echo "$service: rolled back to $(image_of "$service" Spec)"
}

case ${1:-deploy} in
  deploy) deploy ;;
  rollback) rollback ;;
  *) fail "unknown command '$1': expected deploy (the default) or rollback" ;;
esac
