#!/usr/bin/env bash
# The whole test suite: formatting, lints, then every test of the workspace against real
# nats-servers (installed into .tools/ when missing).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export PYOCO_NATS_SERVER="$(scripts/install-nats.sh)"
echo "==> nats-server: $PYOCO_NATS_SERVER"
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
