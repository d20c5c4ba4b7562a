#!/usr/bin/env bash
# The main job, offline, on a fresh machine: set up .venv, start ishowttsd with the tiny model on a
# temporary socket, speak one line to a WAV with ishowttsctl, stop the daemon. Idempotent.
# The tiny model has random weights: the WAV is real f5-tts + Vocos output, but it sounds like noise.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
out=${1:-out/hello.wav}
text=${2:-"Hello chat, thanks for the follow!"}
work=$(mktemp -d)
cat >"$work/ishowttsd.toml" <<TOML
[daemon]
socket = "$work/ishowttsd.sock"
state_dir = "$work/state"
log_dir = "$work/log"
[engine]
model = "tiny"
[jobs]
enabled = false
[logging]
format = "console"
TOML
mkdir -p "$(dirname "$out")"
.venv/bin/ishowttsd --config "$work/ishowttsd.toml" >"$work/daemon.log" 2>&1 &
pid=$!
cleanup() { kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
ctl() { .venv/bin/ishowttsctl --socket "$work/ishowttsd.sock" "$@"; }
echo "demo: starting ishowttsd (tiny model) on $work/ishowttsd.sock"
ctl wait --within 300 || { cat "$work/daemon.log"; exit 1; }
ctl say "$text" --out "$out" --seed 42
ctl status
kill -TERM "$pid"; wait "$pid"; status=$?
echo "demo: daemon stopped (exit $status); wrote $out:"
.venv/bin/python - "$out" <<'PY'
import sys, soundfile
info = soundfile.info(sys.argv[1])
print(f"  {info.samplerate} Hz, {info.channels} channel, {info.duration:.2f} s, {info.subtype}")
PY
