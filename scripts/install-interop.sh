#!/usr/bin/env bash
# Make sure the Python pyoco-server (the original this project re-implements) is installed
# for the interoperability tests (pyoco-core/tests/interop.rs) in the git-ignored
# .tools/interop, and print the virtualenv's path. Override the version with
# PYOCO_INTEROP_VERSION (default 0.5.1, the newest release on PyPI).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "$here/install-pip-tool.sh" interop pyoco-server "${PYOCO_INTEROP_VERSION:-0.5.1}" \
  "the interop tests (they run the original pyoco-server)" \
  python pyoco-server pyoco-worker pyoco-server-admin
