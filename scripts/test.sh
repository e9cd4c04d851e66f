#!/usr/bin/env bash
# Run voxd's test suite (installs first if .venv is missing). Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x .venv/bin/pytest ]] || ./scripts/setup.sh
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [[ $rc -eq 5 ]]; then echo "test.sh: no tests were collected"; exit 0; fi
exit $rc
