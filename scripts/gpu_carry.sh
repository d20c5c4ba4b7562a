#!/bin/sh
# Build .devsite/ (git-ignored via .git/info/exclude): what the lent GPU machine lacks to run the engine.
#   .devsite/site  pure-Python packages copied from this venv (f5-tts, vocos and their imports)
#   .devsite/whl   cp312 manylinux wheels of the compiled ones (cffi, rjieba, soxr, orjson)
#   wandb is a stub: f5_tts.model.trainer imports it at module level; inference never uses it.
# On the device: pip install --no-index --no-deps --target /tmp/site .devsite/whl/*.whl
#                export PYTHONPATH=/tmp/site:$PWD/.devsite/site:$PWD
set -eu
cd "$(dirname "$0")/.."
SP=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
rm -rf .devsite && mkdir -p .devsite/site .devsite/whl .devsite/site/wandb
for m in f5_tts vocos x_transformers einx torch_einops_utils loguru ema_pytorch encodec pypinyin librosa \
         audioread pooch decorator soundfile.py _soundfile.py _soundfile_data pycparser datasets dill \
         multiprocess _multiprocess pydub structlog sdnotify apscheduler tzlocal platformdirs frozendict; do
    cp -r "$SP/$m" .devsite/site/
    for d in "$SP/${m%.py}"-*.dist-info; do [ -d "$d" ] && cp -r "$d" .devsite/site/; done
done
echo '"""Stub for the GPU benchmark machine (see scripts/gpu_carry.sh)."""' > .devsite/site/wandb/__init__.py
find .devsite -name __pycache__ -prune -exec rm -rf {} +
for pkg in cffi==2.0.0 rjieba==0.2.2 soxr==1.1.0 orjson==3.13.0; do
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .devsite/whl "$pkg"
done
# py-spy (a sampling profiler, one static binary) for scripts/gpu_boot_runs.sh
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 -d .devsite/tools py-spy==0.4.3
grep -qx '/.devsite/' .git/info/exclude || echo '/.devsite/' >> .git/info/exclude
du -sh .devsite
