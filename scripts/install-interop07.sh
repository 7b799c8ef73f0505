#!/usr/bin/env bash
# Make sure pyoco-server 0.7.0 (the release that added schedules and bundles; PyPI only has
# 0.5.1) is installed from its source for the ignored interop tests of
# pyoco-core/tests/interop_schedules.rs, in the git-ignored .tools/interop07, and print the
# virtualenv's path.
#
# The source is PYOCO_SERVER_07_SRC (a git checkout or a plain directory) when set, else
# commit 9d7eacd of https://github.com/kitfactory/pyoco-server cloned into .tools/.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.tools/interop07"
commit="9d7eacd"

installed() {
  [ -x "$venv/bin/pyoco-server" ] &&
    [ "$("$venv/bin/python" -m pip show pyoco-server 2>/dev/null | sed -n 's/^Version: //p')" = "0.7.0" ]
}
if installed; then
  echo "$venv"
  exit 0
fi
mkdir -p "$root/.tools"
if command -v flock >/dev/null 2>&1; then
  exec 9>"$root/.tools/interop07.lock"
  flock 9
  if installed; then
    echo "$venv"
    exit 0
  fi
fi

src="$root/.tools/pyoco-server-0.7.0"
rm -rf "$src"
if [ -n "${PYOCO_SERVER_07_SRC:-}" ] && [ -d "$PYOCO_SERVER_07_SRC/.git" -o -f "$PYOCO_SERVER_07_SRC/HEAD" ]; then
  git clone --quiet "$PYOCO_SERVER_07_SRC" "$src" >&2
  git -C "$src" checkout --quiet "$commit" >&2
elif [ -n "${PYOCO_SERVER_07_SRC:-}" ]; then
  cp -r "$PYOCO_SERVER_07_SRC" "$src"
else
  if ! git clone --quiet https://github.com/kitfactory/pyoco-server "$src" >&2; then
    echo "error: cannot fetch the pyoco-server 0.7.0 source from GitHub" >&2
    echo "hint: set PYOCO_SERVER_07_SRC to a checkout of kitfactory/pyoco-server" >&2
    exit 1
  fi
  git -C "$src" checkout --quiet "$commit" >&2
fi
echo "installing pyoco-server 0.7.0 from $src into $venv" >&2
[ -x "$venv/bin/python" ] || python3 -m venv "$venv" >&2
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$src" >&2
if ! installed; then
  echo "error: pyoco-server 0.7.0 is not installed in $venv" >&2
  exit 1
fi
echo "$venv"
