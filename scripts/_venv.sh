# Shared by scripts/dev and scripts/test: a virtualenv in .venv with the given extras.
# Works on a fresh Debian machine with only python3: installs python3-venv when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
    echo "engine needs Python 3.11 or newer ($PYTHON is $("$PYTHON" --version 2>&1))" >&2
    exit 1
fi
if [ ! -x .venv/bin/python ]; then
    if ! "$PYTHON" -m venv .venv 2>/dev/null; then
        rm -rf .venv
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
            "$PYTHON" -m venv .venv
        else
            echo "python3 -m venv failed: install python3-venv (apt-get install python3-venv)" >&2
            exit 1
        fi
    fi
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[$1]"
