#!/bin/sh
# ishowttsctl: the ishowttsd command-line client, run inside the daemon's runtime venv.
set -e
VENV=/opt/ishowttsd/venv
if [ ! -x "$VENV/bin/python3" ]; then
	echo "ishowttsctl: no runtime venv at $VENV: run ishowttsd-setup-venv first" >&2
	exit 1
fi
exec "$VENV/bin/python3" -I -c \
	'import sys; sys.argv[0] = "ishowttsctl"; from ishowttsd.ctl.cli import main; sys.exit(main())' "$@"
