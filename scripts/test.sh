#!/usr/bin/env bash
# The test command of the README (and of CI): set-up, then the whole test suite.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k imaging`.
set -euo pipefail
source "$(dirname "$0")/setup_env.sh"
python -m pytest -q "$@"
