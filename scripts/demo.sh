#!/usr/bin/env bash
# The main job, end to end on this machine: start NATS + gateway + worker, submit a sample
# flow (examples/flows/hello.yaml) and watch it finish. Ports: PYOCO_DEMO_PORT (8000) and
# PYOCO_DEMO_NATS (127.0.0.1:4222). Everything is stopped again at the end.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
port="${PYOCO_DEMO_PORT:-8000}"
nats="${PYOCO_DEMO_NATS:-127.0.0.1:4222}"

export PYOCO_NATS_SERVER="$(scripts/install-nats.sh)"
echo "==> building (first build takes a few minutes)"
cargo build --quiet -p pyoco-gateway -p pyoco-worker -p pyoco-client
bin="$root/target/debug"

store="$(mktemp -d)"
log="$store/gateway.log"
cleanup() {
  [ -n "${gw_pid:-}" ] && kill "$gw_pid" 2>/dev/null && wait "$gw_pid" 2>/dev/null
  rm -rf "$store"
}
trap cleanup EXIT

echo "==> starting nats-server ($nats), gateway (http://127.0.0.1:$port) and a worker"
PYOCO_LOG_FORMAT=text "$bin/pyoco-gateway" up --port "$port" --with-nats --nats-listen "$nats" \
  --nats-store-dir "$store/nats" --with-worker --flows-dir examples/flows >"$log" 2>&1 &
gw_pid=$!
server="http://127.0.0.1:$port"
for _ in $(seq 1 100); do
  if curl -fsS "$server/health" >/dev/null 2>&1 && "$bin/pyoco-client" --server "$server" list >/dev/null 2>&1; then
    break
  fi
  if ! kill -0 "$gw_pid" 2>/dev/null; then
    echo "the gateway did not start:" >&2; cat "$log" >&2; exit 1
  fi
  sleep 0.1
done

echo "==> submitting examples/flows/hello.yaml"
run_id="$("$bin/pyoco-client" --server "$server" submit-yaml --workflow-file examples/flows/hello.yaml --flow-name hello \
  | sed -n 's/.*"run_id" *: *"\([^"]*\)".*/\1/p')"
echo "run_id: $run_id"
echo "==> watching it finish"
"$bin/pyoco-client" --server "$server" watch "$run_id" --output status
echo "==> the finished run"
"$bin/pyoco-client" --server "$server" get "$run_id"
echo "==> the same flow by name (POST /runs, resolved from examples/flows/hello.yaml)"
run2="$("$bin/pyoco-client" --server "$server" submit --flow-name hello --param name=pyoco \
  | sed -n 's/.*"run_id" *: *"\([^"]*\)".*/\1/p')"
"$bin/pyoco-client" --server "$server" watch "$run2" --output status
echo "==> done"
