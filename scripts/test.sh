#!/usr/bin/env bash
# The test command of the README (and of CI): set-up, then the whole test suite.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k imaging`.
set -euo pipefail
# The tests cover the captioner too: install its extra (MeCab dictionary) once.
export ALTI2V_EXTRAS="${ALTI2V_EXTRAS:-test,caption}"
source "$(dirname "$0")/setup_env.sh"
python -m pytest -q "$@"
