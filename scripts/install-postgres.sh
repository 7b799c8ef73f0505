#!/usr/bin/env bash
# Make sure PostgreSQL's server binaries (initdb, postgres) are available and print their
# directory, for the pyoco:sql tests (the testkit reads it from PYOCO_PG_BIN).
#
# Order: $PYOCO_PG_BIN, then the newest /usr/lib/postgresql/<version>/bin (Debian's
# layout). When none is there and we are root with apt-get, install Debian's `postgresql`
# package. PostgreSQL refuses to run as root, so as root the tests run it as the `postgres`
# user, which the package creates; this script checks that it exists.
set -euo pipefail

has_server() { [ -n "$1" ] && [ -x "$1/initdb" ] && [ -x "$1/postgres" ]; }

newest() {
  local dir
  dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -n | tail -n 1 || true)"
  has_server "$dir" && echo "$dir"
}

found=""
if has_server "${PYOCO_PG_BIN:-}"; then
  found="$PYOCO_PG_BIN"
else
  found="$(newest || true)"
fi

if [ -z "$found" ]; then
  "$(dirname "${BASH_SOURCE[0]}")/apt-install.sh" \
    "install your distribution's postgresql server package and set PYOCO_PG_BIN=/path/to/its/bin" postgresql
  found="$(newest || true)"
  if [ -z "$found" ]; then
    echo "error: apt-get installed postgresql but no /usr/lib/postgresql/*/bin/initdb was found" >&2
    exit 1
  fi
fi

if [ "$(id -u)" -eq 0 ] && ! id -u postgres >/dev/null 2>&1; then
  # The package creates this user; a hand-made install may not have.
  echo "creating the system user 'postgres' to run PostgreSQL as (it refuses root)" >&2
  useradd --system --no-create-home --shell /usr/sbin/nologin postgres >&2
fi
echo "$found"
