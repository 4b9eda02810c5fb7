# Sourced by demo.sh and test.sh: makes .venv on first use and installs alti2v into it.
# Reinstalls only when setup.py changed since the last install.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PYTHON="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -c 'import sys; assert (3, 10) <= sys.version_info[:2] <= (3, 12), \
    f"alti2v needs Python 3.10-3.12, found {sys.version.split()[0]}"'
  echo "[setup] creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
# The web page's browser test drives Debian's chromium through its chromedriver (no browser
# can be downloaded at run time); installed once, quietly, when missing.
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  echo "[setup] installing Debian's chromium and chromium-driver (the web page's browser test)"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  if ! { $SUDO apt-get update -qq &&
         DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver
       } > "$VENV/chromium-install.log" 2>&1; then
    tail -n 20 "$VENV/chromium-install.log"
    echo "[setup] could not install chromium; install Debian's chromium and chromium-driver" \
         "(apt-get install -y chromium chromium-driver: /usr/bin/chromium and" \
         "/usr/bin/chromedriver), then run this again" >&2
    exit 1
  fi
fi
STAMP="$VENV/.alti2v-installed"
# Both README commands need the same extras (the demo runs the captioner: MeCab's dictionary).
EXTRAS="${ALTI2V_EXTRAS:-test,caption}"
WANT="$(cat "$ROOT/setup.py" | sha256sum | cut -d' ' -f1) $EXTRAS"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  echo "[setup] installing alti2v[$EXTRAS] and its dependencies (about a minute)"
  LOG="$VENV/install.log"
  if ! { "$VENV/bin/python" -m pip install --upgrade pip &&
         "$VENV/bin/python" -m pip install -e "$ROOT[$EXTRAS]"; } > "$LOG" 2>&1; then
    tail -n 40 "$LOG"; echo "[setup] pip install failed; full log: $LOG" >&2; exit 1
  fi
  echo "$WANT" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
# Without it, glibc's per-thread malloc arenas fragment under tf.data and RSS creeps up.
export MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX:-2}"
cd "$ROOT"
