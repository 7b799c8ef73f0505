#!/usr/bin/env bash
# Make sure what `pyoco-bench --compare` runs besides pyoco is installed, and print
# "KEY=VALUE" lines for scripts/bench-compare.sh:
#   REDIS_SERVER   redis-server (Debian's package, installed with apt-get when missing)
#   CELERY_VENV    a git-ignored virtualenv .tools/compare with Celery and the Redis client
#   INTEROP_VENV   the original pyoco-server 0.5.1 (scripts/install-interop.sh)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

redis="$(command -v redis-server || true)"
if [ -z "$redis" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing redis-server (Debian package) for the Celery comparison" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server >&2 \
      || { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server >&2; }
    redis="$(command -v redis-server || true)"
  fi
  if [ -z "$redis" ]; then
    echo "error: redis-server is needed for the Celery comparison" >&2
    echo "hint: apt-get install redis-server (as root), or put one on PATH" >&2
    exit 1
  fi
fi

celery_venv="$("$here/install-pip-tool.sh" compare celery "${PYOCO_COMPARE_CELERY_VERSION:-5.6.3}" \
  "the Celery comparison (pyoco-bench --compare)" python celery)"
# Celery's Redis transport needs the Redis client and `packaging` (celery[redis]).
if ! "$celery_venv/bin/python" -c 'import redis, packaging' 2>/dev/null; then
  echo "installing the Redis client into $celery_venv" >&2
  "$celery_venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "redis==6.4.0" "packaging>=24" >&2
fi

interop_venv="$("$here/install-interop.sh")"
echo "REDIS_SERVER=$redis"
echo "CELERY_VENV=$celery_venv"
echo "INTEROP_VENV=$interop_venv"
