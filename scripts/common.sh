# Shared by install.sh and test.sh (sourced, not run).
# shellcheck shell=bash

export DEBIAN_FRONTEND=noninteractive
VENV="${PYDOCKERD_VENV:-/opt/pydockerd}"

need_root() {
    if [ "$(id -u)" != 0 ]; then
        echo "$0: run as root (pydockerd creates namespaces, mounts and interfaces)" >&2
        exit 1
    fi
}

# apt-get install that refreshes the package lists only when it has to: a fresh machine
# has none, a CI machine that ran this before has them.
apt_install() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "+ apt-get install ${missing[*]}"
    if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >/tmp/pydockerd-apt.log 2>&1; then
        apt-get update -q >/tmp/pydockerd-apt-update.log 2>&1 || true
        apt-get install -y -q --no-install-recommends "${missing[@]}" >/tmp/pydockerd-apt.log 2>&1 || {
            tail -20 /tmp/pydockerd-apt.log >&2
            return 1
        }
    fi
}

# The first Python >= 3.11 on PATH (pyproject: requires-python >= 3.11).
find_python() {
    local c
    for c in python3.13 python3.12 python3.11 python3; do
        if command -v "$c" >/dev/null 2>&1 &&
            "$c" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            command -v "$c"
            return 0
        fi
    done
    echo "no Python >= 3.11 found (Debian 12 and Ubuntu 24.04 ship one)" >&2
    return 1
}

# A virtualenv for pydockerd: Debian's system Python refuses `pip install` (PEP 668), and
# a venv keeps the daemon's pinned uvicorn/httptools away from other software.
ensure_venv() {
    local py
    py="$(find_python)"
    if [ ! -x "$VENV/bin/python" ]; then
        "$py" -m venv "$VENV" 2>/dev/null || {
            apt_install python3-venv
            "$py" -m venv "$VENV"
        }
    fi
    "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
}
