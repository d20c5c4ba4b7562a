#!/usr/bin/env bash
# Create/refresh the virtual environment at .venv with the pinned CPU stack (idempotent).
# Used by scripts/demo.sh and scripts/test.sh; safe to run again at any time.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
log=.venv/setup.log
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@" >>"$log" 2>&1 \
  || { echo "setup: pip $* failed; see $log" >&2; tail -20 "$log" >&2; exit 1; }; }
stamp=.venv/.ishowttsd-setup
want="$(sha256sum constraints-cpu.txt pyproject.toml | sha256sum | cut -c1-16)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing the pinned CPU stack into .venv (first run: 1-3 minutes)"
  pip install --upgrade pip
  # torch first, from the CPU wheel pinned in the constraints (a plain `torch` would pull CUDA, several GB).
  pip install -c constraints-cpu.txt torch
  pip install -c constraints-cpu.txt -e '.[test]'
  echo "$want" > "$stamp"
fi
# PyPI's torchaudio links CUDA libraries; beside a CPU torch its .so files fail to load. Without them
# torchaudio falls back to pure Python, which is all f5-tts and vocos need (see docs/operations.md).
if ! .venv/bin/python -c "import torchaudio" >/dev/null 2>&1; then
  rm -f .venv/lib/python3*/site-packages/torchaudio/lib/*.so
fi
.venv/bin/python -c "import torch, torchaudio, f5_tts, vocos, aiohttp" >/dev/null 2>&1 \
  || { echo "setup: the environment does not import; remove .venv and run again" >&2; exit 1; }
echo "setup: .venv ready (torch $(.venv/bin/python -c 'import torch; print(torch.__version__)'))"
