#!/usr/bin/env bash
# The whole test suite: formatting, lints, then every test of the workspace against real
# nats-servers (installed into .tools/ when missing).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export PYOCO_NATS_SERVER="$(scripts/install-nats.sh)"
echo "==> nats-server: $PYOCO_NATS_SERVER"
# PostgreSQL for the pyoco:sql tests (under CI=true they fail without it, elsewhere they skip).
PYOCO_PG_BIN="$(scripts/install-postgres.sh || true)"
export PYOCO_PG_BIN
echo "==> postgresql: ${PYOCO_PG_BIN:-missing}"
# bubblewrap sandboxes pyoco:python scripts (their tests need it).
echo "==> bubblewrap: $(scripts/install-bubblewrap.sh)"
# promtool checks deploy/prometheus (a failure to fetch it fails that test under CI=true).
PYOCO_PROMTOOL="$(scripts/install-promtool.sh || true)"
export PYOCO_PROMTOOL
echo "==> promtool: ${PYOCO_PROMTOOL:-missing}"
echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "==> rustdoc -D warnings"
RUSTDOCFLAGS="-D warnings" cargo doc -p pyoco-core --no-deps --quiet
echo "==> tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi
# A smoke test, not a timed assertion: it fails only on errors (a run lost or failed, a process
# crash, a component exiting non-zero); speed is tracked in BENCHMARKS.md.
echo "==> pyoco-bench --quick (debug build; smoke test, fails only on errors, see BENCHMARKS.md)"
cargo build --quiet -p pyoco-bench -p pyoco-gateway -p pyoco-worker && "${CARGO_TARGET_DIR:-target}/debug/pyoco-bench" --quick
# The fault suite's quick variant (debug build, under ~2 minutes): fails only when a run was
# lost, duplicated beyond what at-least-once delivery allows, or stuck; never on a time. The
# full run's table is in RELIABILITY.md.
echo "==> scripts/faults.sh --quick (fails only on lost/duplicated/stuck runs, see RELIABILITY.md)"
scripts/faults.sh --quick
