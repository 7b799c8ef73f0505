#!/usr/bin/env bash
# Make sure the Python pyoco-server (the original this project re-implements) is installed
# for the interoperability tests (pyoco-core/tests/interop.rs), and print the virtualenv's path.
#
# The virtualenv lives in the git-ignored .tools/interop folder. When it already holds the
# wanted version this is quick and touches no network. Override the version with
# PYOCO_INTEROP_VERSION (default 0.5.1, the newest release on PyPI).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.tools/interop"
version="${PYOCO_INTEROP_VERSION:-0.5.1}"

installed() {
  [ -x "$venv/bin/python" ] && [ -x "$venv/bin/pyoco-server" ] && [ -x "$venv/bin/pyoco-worker" ] \
    && [ "$("$venv/bin/python" -m pip show pyoco-server 2>/dev/null | sed -n 's/^Version: //p')" = "$version" ]
}

if installed; then
  echo "$venv"
  exit 0
fi

# Tests may run this from several processes at once (nextest): one installs, the others wait
# for it and then find the venv ready.
mkdir -p "$root/.tools"
if command -v flock >/dev/null 2>&1; then
  exec 9>"$root/.tools/interop.lock"
  flock 9
  if installed; then
    echo "$venv"
    exit 0
  fi
fi

if ! command -v python3 >/dev/null 2>&1; then
  echo "error: python3 is required for the interop tests (they run the original pyoco-server)" >&2
  exit 1
fi

echo "installing pyoco-server==$version into $venv" >&2
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" >&2
fi
if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  "pyoco-server==$version" >&2; then
  echo "error: could not install pyoco-server==$version from PyPI into $venv" >&2
  echo "hint: the interop tests need PyPI once (pip install pyoco-server==$version);" >&2
  echo "      check the network or proxy, or point PIP_INDEX_URL at a mirror" >&2
  exit 1
fi
if ! installed; then
  echo "error: pip finished but pyoco-server $version is not installed in $venv" >&2
  exit 1
fi
echo "$venv"
