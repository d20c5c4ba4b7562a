#!/bin/sh
# Build the runtime virtual environment ishowttsd runs in (installed as ishowttsd-setup-venv).
#
# The daemon needs PyTorch, f5-tts and a few libraries that Debian does not ship in the versions or
# builds a GPU box needs, so they live in a venv (default /opt/ishowttsd/venv) that this script
# builds for the machine's flavour:
#   cpu     torch + torchaudio CPU wheels from the PyTorch CPU index
#   cuda    torch + torchaudio CUDA wheels (PyPI's default builds; --torch-index-url for others)
#   jetson  NVIDIA's wheels for the board's JetPack (--torch-wheel, repeatable), or the system's
#           torch (--system-site-packages); also writes a drop-in allowing the board's GPU nodes
# then installs the daemon's own requirements (read from its installed metadata) and checks that
# the daemon starts far enough to print its version. Re-running it updates the venv in place.
#
# The daemon's code comes from the Debian package (/usr/lib/ishowttsd, linked in with a .pth file)
# or, for a pip-based install, from --install-daemon SPEC (a path or a requirement).
set -eu

VENV=/opt/ishowttsd/venv
FLAVOUR=auto
PYTHON=/usr/bin/python3
DAEMON_DIR=/usr/lib/ishowttsd
SYSROOT=/
DROPIN_DIR=/etc/systemd/system/ishowttsd.service.d
CPU_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX=""
TORCH_WHEELS=""
REUSE=""
CONSTRAINTS=""
INSTALL_DAEMON=""
OFFLINE=no
SYSTEM_SITE=no
RECREATE=no
ACTION=build

usage() {
	cat <<EOF
usage: ishowttsd-setup-venv [options]
  --flavour auto|cpu|cuda|jetson   PyTorch build to install (auto: detect; default)
  --venv DIR                       venv to build (default $VENV)
  --python PATH                    interpreter to build it with (default $PYTHON)
  --torch-index-url URL            index for torch/torchaudio (cpu default: $CPU_INDEX)
  --torch-wheel FILE|URL           Jetson: NVIDIA's torch (and torchaudio) wheel; repeatable
  --system-site-packages           make the system's packages visible (JetPack's torch)
  --constraints FILE               pip constraints file (pinned versions)
  --reuse-site-packages DIR        use the packages of an existing environment instead of
                                   downloading them (tests, offline boxes)
  --install-daemon SPEC            pip-install the daemon itself (no Debian package)
  --offline                        never contact a package index
  --recreate                       delete and rebuild the venv
  --sysroot DIR                    root for hardware detection (tests; default /)
  --dropin-dir DIR                 where the Jetson device drop-in goes (default $DROPIN_DIR)
  --detect                         only print the detected flavour
  --device-dropin                  only (re)write the Jetson device drop-in
EOF
}

die() {
	echo "ishowttsd-setup-venv: $*" >&2
	exit 1
}

need_value() {
	if [ "$#" -lt 2 ] || [ -z "$2" ]; then
		die "$1 needs a value"
	fi
}

parse_args() {
	while [ "$#" -gt 0 ]; do
		case "$1" in
			--flavour) need_value "$@"; FLAVOUR=$2; shift ;;
			--venv) need_value "$@"; VENV=$2; shift ;;
			--python) need_value "$@"; PYTHON=$2; shift ;;
			--torch-index-url) need_value "$@"; TORCH_INDEX=$2; shift ;;
			--torch-wheel) need_value "$@"; TORCH_WHEELS="$TORCH_WHEELS $2"; shift ;;
			--system-site-packages) SYSTEM_SITE=yes ;;
			--constraints) need_value "$@"; CONSTRAINTS=$2; shift ;;
			--reuse-site-packages) need_value "$@"; REUSE=$2; shift ;;
			--install-daemon) need_value "$@"; INSTALL_DAEMON=$2; shift ;;
			--offline) OFFLINE=yes ;;
			--recreate) RECREATE=yes ;;
			--sysroot) need_value "$@"; SYSROOT=$2; shift ;;
			--dropin-dir) need_value "$@"; DROPIN_DIR=$2; shift ;;
			--detect) ACTION=detect ;;
			--device-dropin) ACTION=dropin ;;
			-h|--help) usage; exit 0 ;;
			*) usage >&2; die "unknown option $1" ;;
		esac
		shift
	done
}

# Jetson: a Tegra release file or device-tree entry; CUDA: the NVIDIA driver; else CPU.
detect_flavour() {
	if [ -e "$SYSROOT/etc/nv_tegra_release" ] || \
		grep -qa "nvidia,tegra" "$SYSROOT/proc/device-tree/compatible" 2>/dev/null; then
		echo jetson
	elif [ -e "$SYSROOT/proc/driver/nvidia/version" ]; then
		echo cuda
	else
		echo cpu
	fi
}

pip_install() {
	set -- "$VENV/bin/python3" -I -m pip install --disable-pip-version-check --no-input --quiet "$@"
	[ "$OFFLINE" = yes ] && set -- "$@" --no-index
	[ -n "$CONSTRAINTS" ] && set -- "$@" --constraint "$CONSTRAINTS"
	"$@"
}

site_packages() {
	"$VENV/bin/python3" -I -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'
}

create_venv() {
	[ "$RECREATE" = yes ] && rm -rf "$VENV"
	if [ ! -x "$VENV/bin/python3" ]; then
		set -- "$PYTHON" -m venv
		[ "$SYSTEM_SITE" = yes ] && set -- "$@" --system-site-packages
		# A reused environment brings its own pip and setuptools; venv's bundled (older) ones
		# would shadow them.
		[ -n "$REUSE" ] && set -- "$@" --without-pip
		"$@" "$VENV"
	fi
}

# .pth files put the Debian package's code and any reused environment on the venv's path.
link_paths() {
	site=$(site_packages)
	rm -f "$site/10-ishowttsd-daemon.pth" "$site/20-ishowttsd-reuse.pth"
	if [ -z "$INSTALL_DAEMON" ] && [ -d "$DAEMON_DIR/ishowttsd" ]; then
		echo "$DAEMON_DIR" > "$site/10-ishowttsd-daemon.pth"
	fi
	if [ -n "$REUSE" ]; then
		[ -d "$REUSE" ] || die "--reuse-site-packages: no directory $REUSE"
		echo "$REUSE" > "$site/20-ishowttsd-reuse.pth"
	fi
}

install_torch() {
	"$VENV/bin/python3" -I -c 'import torch, torchaudio' 2>/dev/null && return 0
	case "$FLAVOUR" in
		cpu) pip_install --index-url "${TORCH_INDEX:-$CPU_INDEX}" torch torchaudio ;;
		cuda) pip_install ${TORCH_INDEX:+--index-url "$TORCH_INDEX"} torch torchaudio ;;
		jetson)
			[ -n "$TORCH_WHEELS" ] || die "jetson: give NVIDIA's wheels with --torch-wheel (or --system-site-packages)"
			# shellcheck disable=SC2086
			pip_install $TORCH_WHEELS ;;
		*) die "unknown flavour $FLAVOUR (cpu, cuda, jetson)" ;;
	esac
}

# The daemon's requirements, from its installed metadata (pyproject.toml is the only list).
daemon_requirements() {
	"$VENV/bin/python3" -I -c '
import importlib.metadata as metadata
for requirement in metadata.requires("ishowttsd") or []:
    if "extra ==" not in requirement:
        print(requirement)'
}

install_daemon_and_requirements() {
	if [ -n "$INSTALL_DAEMON" ]; then
		pip_install "$INSTALL_DAEMON"
		return 0
	fi
	requirements=$(mktemp)
	daemon_requirements > "$requirements" || { rm -f "$requirements"; die "ishowttsd is not importable from $DAEMON_DIR"; }
	pip_install --requirement "$requirements" || { rm -f "$requirements"; die "installing the requirements failed"; }
	rm -f "$requirements"
}

jetson_nodes() {
	for node in "$SYSROOT"/dev/nvhost-* "$SYSROOT"/dev/nvmap "$SYSROOT"/dev/nvgpu/*/*; do
		if [ -e "$node" ]; then
			echo "/${node#"$SYSROOT"/}"
		fi
	done
}

# Jetson's GPU nodes are not NVIDIA driver character devices: allow the ones this board has.
write_jetson_dropin() {
	nodes=$(jetson_nodes)
	[ -n "$nodes" ] || return 0
	mkdir -p "$DROPIN_DIR"
	{
		echo "# Written by ishowttsd-setup-venv --flavour jetson: this board's GPU device nodes."
		echo "[Service]"
		for node in $nodes; do echo "DeviceAllow=$node rw"; done
	} > "$DROPIN_DIR/50-jetson-devices.conf"
}

check_venv() {
	"$VENV/bin/python3" -I -m ishowttsd --version >/dev/null || die "the daemon does not start in $VENV"
	"$VENV/bin/python3" -I -c '
import torch
print(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}")'
}

build() {
	echo "ishowttsd-setup-venv: building $VENV for $FLAVOUR"
	create_venv
	link_paths
	install_torch
	install_daemon_and_requirements
	[ "$FLAVOUR" = jetson ] && write_jetson_dropin
	check_venv
	echo "ishowttsd-setup-venv: done; start the service with: systemctl restart ishowttsd"
}

main() {
	parse_args "$@"
	[ "$FLAVOUR" = auto ] && FLAVOUR=$(detect_flavour)
	case "$ACTION" in
		detect) echo "$FLAVOUR" ;;
		dropin) write_jetson_dropin ;;
		build) build ;;
	esac
}

main "$@"
