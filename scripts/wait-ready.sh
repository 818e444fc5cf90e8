#!/usr/bin/env bash
# After `compose up`: waits until the shim reports the runtime and the
# network ready and the kubelet is healthy and reaches its runtime, then
# says where to look. $COMPOSE is the compose command, $UP_TIMEOUT seconds
# the limit.
set -euo pipefail

compose=${COMPOSE:-docker compose}
timeout=${UP_TIMEOUT:-180}
say() { printf '[make up] %s\n' "$*"; }

in_kubelet() { $compose exec -T kubelet "$@" 2>/dev/null; }

runtime_ready() {
  local conditions
  conditions=$(in_kubelet crictl info -o go-template \
    --template '{{range .status.conditions}}{{.type}}={{.status}} {{end}}') || return 1
  [[ $conditions == *RuntimeReady=true* && $conditions == *NetworkReady=true* ]]
}

# /healthz: the kubelet's sync loop runs; /runningpods/: the kubelet lists
# pods through the CRI, so it reaches the runtime.
kubelet_ready() {
  in_kubelet curl -fsS --max-time 5 http://127.0.0.1:10248/healthz >/dev/null &&
    in_kubelet curl -fsSk --max-time 5 https://127.0.0.1:10250/runningpods/ >/dev/null
}

say "waiting up to ${timeout}s for cri-dockerd-rs and the kubelet"
deadline=$((SECONDS + timeout))
until runtime_ready && kubelet_ready; do
  if ((SECONDS >= deadline)); then
    $compose ps >&2 || true
    $compose logs --tail=40 >&2 || true
    say "not ready after ${timeout}s; the logs above, and the README's troubleshooting section, say why" >&2
    exit 1
  fi
  sleep 2
done

say "the kubelet is up and its runtime (cri-dockerd-rs) is ready"
in_kubelet crictl pods || true
cat <<TXT

  make crictl ARGS=pods      pods (static pods from ./manifests take a moment to pull)
  make crictl ARGS=ps        containers
  make logs                  kubelet and cri-dockerd-rs logs
  curl http://127.0.0.1/     the hello-world nginx (host network)
  make clean                 stop everything (state under /var/run stays)
TXT
