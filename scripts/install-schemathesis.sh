#!/usr/bin/env bash
# Make sure schemathesis (the OpenAPI fuzzer, from PyPI) is installed for the API fuzz test
# (pyoco-core/tests/schemathesis.rs) in the git-ignored .tools/schemathesis, and print the
# virtualenv's path. Override the version with PYOCO_SCHEMATHESIS_VERSION.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "$here/install-pip-tool.sh" schemathesis schemathesis "${PYOCO_SCHEMATHESIS_VERSION:-4.32.5}" \
  "the API fuzz test (schemathesis)" schemathesis
