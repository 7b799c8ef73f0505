#!/usr/bin/env bash
# Make sure the dashboard's browser test (pyoco-core/tests/dashboard_browser.rs) has what it
# needs and print the Playwright virtualenv's path:
# - Debian's chromium at /usr/bin/chromium (apt-get install, as root, when missing; Playwright's
#   own browser download is not used, so the test runs the distribution's patched browser);
# - Playwright for Python (PyPI) in the git-ignored .tools/playwright. Override the version with
#   PYOCO_PLAYWRIGHT_VERSION.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
chromium="${PYOCO_CHROMIUM:-/usr/bin/chromium}"

if [ ! -x "$chromium" ]; then
  mkdir -p "$root/.tools"
  # One installer at a time when several test processes start at once.
  exec 8>"$root/.tools/chromium.lock"
  command -v flock >/dev/null 2>&1 && flock 8
  if [ ! -x "$chromium" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "installing chromium with apt-get" >&2
      export DEBIAN_FRONTEND=noninteractive
      if ! apt-get install -y --no-install-recommends chromium chromium-driver fonts-noto-cjk >&2; then
        apt-get update >&2
        apt-get install -y --no-install-recommends chromium chromium-driver fonts-noto-cjk >&2
      fi
    else
      echo "error: the dashboard browser test needs Chromium at $chromium" >&2
      echo "hint: sudo apt-get install chromium chromium-driver (or set PYOCO_CHROMIUM)" >&2
      exit 1
    fi
  fi
fi

exec "$here/install-pip-tool.sh" playwright playwright "${PYOCO_PLAYWRIGHT_VERSION:-1.65.2}" \
  "the dashboard browser test (Playwright for Python)" python
