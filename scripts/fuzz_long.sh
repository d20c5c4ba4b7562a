#!/usr/bin/env bash
# Long hostile-input run against the real daemon (tiny model, CPU): the 7 property-based tests of
# tests/reliability/test_fuzz_routes.py with HYPOTHESIS_PROFILE=long, 1500 cases each = 10,500 cases.
# About an hour on 2 cores. Extra arguments go to pytest, e.g. `-x`; FUZZ_EXAMPLES=N sets the cases per
# test (a quick check of the script itself: FUZZ_EXAMPLES=5 scripts/fuzz_long.sh).
# Reproduce a run: HYPOTHESIS_SEED=1234 scripts/fuzz_long.sh. A failure prints the minimal case and a
# @reproduce_failure blob; failing cases are also kept in .hypothesis/ and replayed first next time.
# Needs what the test suite needs (scripts/setup.sh), root not required.
set -euo pipefail
cd "$(dirname "$0")/.."
seed=()
if [[ -n "${HYPOTHESIS_SEED:-}" ]]; then
  seed=(--hypothesis-seed="$HYPOTHESIS_SEED")
fi
exec env HYPOTHESIS_PROFILE=long .venv/bin/python -m pytest tests/reliability/test_fuzz_routes.py \
  -q -p no:cacheprovider --hypothesis-show-statistics -W ignore::hypothesis.errors.HypothesisWarning \
  -k "not giant and not slow_clients" "${seed[@]}" "$@"
