#!/usr/bin/env bash
# Install Debian packages for the test tools: `apt-install.sh "<hint if we cannot>" pkg...`.
# Only as root with apt-get (as in CI); otherwise print why and the hint, and fail.
set -euo pipefail
hint="$1"
shift
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "error: $* missing, and only root with apt-get can install it here" >&2
  echo "hint: $hint" >&2
  exit 1
fi
echo "installing Debian's $* with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends "$@" >&2
