#!/usr/bin/env bash
# Start (or stop) the real parts the integration tests and the demo need:
#   - the machine's own dockerd, ONLY to build images and run disposable Docker hosts.
#     It is started with command-line flags; this script never writes /etc/docker.
#     An already running dockerd is used as it is.
#   - Debian's docker-registry on 127.0.0.1:5000 (storage under $STATE/registry).
# Usage: scripts/testenv.sh up|down|status
set -euo pipefail
cd "$(dirname "$0")/.."
STATE="${HARDENING_STATE_DIR:-/var/tmp/hardening-docker-authz}"
SOCK=/var/run/docker.sock
REGISTRY=127.0.0.1:5000
mkdir -p "$STATE"

log() { printf '[testenv] %s\n' "$*"; }

docker_up() { curl -sf --unix-socket "$SOCK" http://d/_ping >/dev/null 2>&1; }
registry_up() { curl -sf "http://$REGISTRY/v2/" >/dev/null 2>&1; }

wait_for() { # wait_for SECONDS CMD...
  local t=$1; shift
  for ((i = 0; i < t * 5; i++)); do "$@" && return 0; sleep 0.2; done
  return 1
}

up() {
  if ! docker_up; then
    command -v dockerd >/dev/null || { echo "dockerd not installed: run scripts/setup.sh" >&2; exit 1; }
    log "starting dockerd (log: $STATE/dockerd.log)"
    rm -f /var/run/docker.pid
    nohup dockerd --host "unix://$SOCK" >"$STATE/dockerd.log" 2>&1 </dev/null &
    wait_for 60 docker_up || { tail -20 "$STATE/dockerd.log" >&2; echo "dockerd did not start" >&2; exit 1; }
  fi
  if ! registry_up; then
    mkdir -p "$STATE/registry/data"
    cat >"$STATE/registry/config.yml" <<YAML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $STATE/registry/data
  delete:
    enabled: true
http:
  addr: $REGISTRY
YAML
    log "starting docker-registry on $REGISTRY"
    nohup docker-registry serve "$STATE/registry/config.yml" >"$STATE/registry.log" 2>&1 </dev/null &
    echo $! >"$STATE/registry.pid"
    wait_for 30 registry_up || { tail -20 "$STATE/registry.log" >&2; echo "registry did not start" >&2; exit 1; }
  fi
  log "dockerd $(curl -sf --unix-socket "$SOCK" http://d/version | python3 -c 'import json,sys; print(json.load(sys.stdin)["Version"])') and registry $REGISTRY are up"
}

down() {
  if [[ -f "$STATE/registry.pid" ]]; then kill "$(cat "$STATE/registry.pid")" 2>/dev/null || true; rm -f "$STATE/registry.pid"; fi
  log "registry stopped (dockerd left running: other work on this machine may use it)"
}

status() {
  docker_up && log "dockerd: up" || log "dockerd: down"
  registry_up && log "registry: up" || log "registry: down"
}

case "${1:-up}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
