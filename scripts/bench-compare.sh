#!/usr/bin/env bash
# pyoco side by side with the original pyoco-server 0.5.1 and Celery (Redis broker and
# result backend): the same workload — RUNS runs of a two-task flow (the original
# quickstart's add_one >> to_text, Python functions), 64 in flight, submit → completed —
# against each in one invocation, printing one table (BENCHMARKS.md, "Side by side").
#
# usage: scripts/bench-compare.sh [pyoco-bench flags, e.g. --runs 2000 --json compare.json]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
PYOCO_NATS_SERVER="$(scripts/install-nats.sh)"
export PYOCO_NATS_SERVER
eval "$(scripts/install-compare.sh)"
cargo build --release --quiet -p pyoco-bench -p pyoco-gateway -p pyoco-worker
exec target/release/pyoco-bench --compare \
  --redis-server "$REDIS_SERVER" --celery-venv "$CELERY_VENV" --interop-venv "$INTEROP_VENV" "$@"
