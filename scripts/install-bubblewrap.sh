#!/usr/bin/env bash
# Make sure bubblewrap (bwrap), the sandbox of pyoco:python inline scripts, is installed and
# print its path. As root with apt-get, installs Debian's `bubblewrap` package when missing.
set -euo pipefail
if ! command -v bwrap >/dev/null; then
  "$(dirname "${BASH_SOURCE[0]}")/apt-install.sh" \
    "install your distribution's bubblewrap package, or set PYOCO_SCRIPT_SANDBOX=off" bubblewrap
fi
command -v bwrap
