#!/usr/bin/env bash
# Set everything up and run the whole test suite (unit, integration against the real daemon,
# reliability, and system tests under a real systemd / logrotate / dpkg). Idempotent.
# The system tests need root (Debian packages are installed by scripts/system-deps.sh); as a
# non-root user they are skipped with a reason. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  ./scripts/system-deps.sh
fi
export HYPOTHESIS_PROFILE=${HYPOTHESIS_PROFILE:-ci}
echo "test: ruff"
.venv/bin/ruff check .
echo "test: pytest"
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@" tests
