#!/usr/bin/env bash
# The fault suite: every fault scenario (nats-server restarted under load, a cluster node
# lost, a worker SIGKILLed mid-run, a gateway SIGKILLed during a submit burst, cancels racing
# the last task, a hung worker, a full NATS store, a paused NATS node) against the real
# binaries, then one table of what became of the runs. Exits 1 only when a run was lost,
# duplicated or stuck, never on a time. See RELIABILITY.md.
#
#   scripts/faults.sh --quick          # small counts, under ~2 minutes (scripts/test.sh runs this)
#   scripts/faults.sh --release        # the full run of RELIABILITY.md (release build)
#   scripts/faults.sh --only worker-hang,slow-nats --work-dir /tmp/faults   # keep the logs
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
PYOCO_NATS_SERVER="${PYOCO_NATS_SERVER:-$(scripts/install-nats.sh)}"
export PYOCO_NATS_SERVER
profile=debug
args=()
for arg in "$@"; do
  if [[ "$arg" == "--release" ]]; then profile=release; else args+=("$arg"); fi
done
flags=(--quiet -p pyoco-bench -p pyoco-gateway -p pyoco-worker)
[[ "$profile" == release ]] && flags+=(--release)
cargo build "${flags[@]}"
exec "${CARGO_TARGET_DIR:-target}/$profile/pyoco-bench" faults "${args[@]}"
