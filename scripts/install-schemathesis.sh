#!/usr/bin/env bash
# Make sure schemathesis (the OpenAPI fuzzer, from PyPI) is installed for the API fuzz test
# (pyoco-core/tests/schemathesis.rs), and print the virtualenv's path.
#
# The virtualenv lives in the git-ignored .tools/schemathesis folder; when it already holds
# the wanted version this is quick and touches no network. Override the version with
# PYOCO_SCHEMATHESIS_VERSION.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.tools/schemathesis"
version="${PYOCO_SCHEMATHESIS_VERSION:-4.32.5}"

installed() {
  [ -x "$venv/bin/schemathesis" ] \
    && [ "$("$venv/bin/python" -m pip show schemathesis 2>/dev/null | sed -n 's/^Version: //p')" = "$version" ]
}

if installed; then
  echo "$venv"
  exit 0
fi

mkdir -p "$root/.tools"
if command -v flock >/dev/null 2>&1; then
  exec 9>"$root/.tools/schemathesis.lock"
  flock 9
  if installed; then
    echo "$venv"
    exit 0
  fi
fi

if ! command -v python3 >/dev/null 2>&1; then
  echo "error: python3 is required for the API fuzz test (schemathesis)" >&2
  exit 1
fi
echo "installing schemathesis==$version into $venv" >&2
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" >&2
fi
if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  "schemathesis==$version" >&2; then
  echo "error: could not install schemathesis==$version from PyPI into $venv" >&2
  echo "hint: the API fuzz test needs PyPI once; check the network or point PIP_INDEX_URL at a mirror" >&2
  exit 1
fi
if ! installed; then
  echo "error: pip finished but schemathesis $version is not installed in $venv" >&2
  exit 1
fi
echo "$venv"
