#!/usr/bin/env bash
# Make sure `promtool` (Prometheus's rule checker) is available for the deploy-file test
# (pyoco-core/tests/deploy_files.rs) and print its path.
#
# Order: $PYOCO_PROMTOOL, the repo's .tools folder, then PATH. Otherwise the Debian package
# `prometheus` is downloaded (not installed: that would also set up a Prometheus service)
# and only its static promtool binary is unpacked into the git-ignored .tools/prometheus.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="$root/.tools/prometheus"

for candidate in "${PYOCO_PROMTOOL:-}" "$dir/usr/bin/promtool" "$(command -v promtool || true)"; do
  if [ -n "$candidate" ] && [ -x "$candidate" ] && "$candidate" --version >/dev/null 2>&1; then
    echo "$candidate"
    exit 0
  fi
done

command -v apt-get >/dev/null || { echo "promtool not found and no apt-get to fetch it" >&2; exit 1; }
echo "fetching promtool from the Debian package prometheus into $dir" >&2
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download prometheus >/dev/null 2>&1) || {
  # The package lists may be missing on a fresh machine.
  if [ "$(id -u)" = 0 ]; then apt-get update -qq >/dev/null 2>&1 || true; fi
  (cd "$work" && apt-get download prometheus >/dev/null)
}
mkdir -p "$dir"
dpkg-deb -x "$work"/prometheus_*.deb "$work/x"
mkdir -p "$dir/usr/bin"
cp "$work/x/usr/bin/promtool" "$dir/usr/bin/promtool"
"$dir/usr/bin/promtool" --version >/dev/null
echo "$dir/usr/bin/promtool"
