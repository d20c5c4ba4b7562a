#!/bin/sh
# Install the Debian packages the system tests (tests/system) need: logrotate, the Debian
# packaging toolchain (debhelper, dh-python: the package's Build-Depends), lintian, what the
# package itself depends on (adduser, python3-venv), and the tools the systemd harness uses
# (util-linux's unshare/nsenter/setpriv, curl). systemd itself is part of the base image.
# Idempotent and quiet: packages already present are not touched and `apt-get update` runs once,
# only when something is missing. Needs root.
set -eu

PACKAGES="systemd util-linux passwd logrotate curl adduser python3-venv debhelper dh-python lintian"

missing_packages() {
    for pkg in $PACKAGES; do
        dpkg-query -W -f='${Status}\n' "$pkg" 2>/dev/null | grep -q '^install ok installed$' \
            || printf '%s\n' "$pkg"
    done
}

if [ "$(id -u)" -ne 0 ]; then
    echo "system-deps.sh: must run as root" >&2
    exit 1
fi

MISSING=$(missing_packages)
if [ -z "$MISSING" ]; then
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $MISSING >/dev/null
