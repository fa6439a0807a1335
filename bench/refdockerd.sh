#!/usr/bin/env bash
# A reference dockerd for the benches' --compare, doing the same work as pydockerd's defaults.
#
#   bash bench/refdockerd.sh start   # prints the DOCKER_HOST to give --compare
#   bash bench/refdockerd.sh stop    # removes its containers, stops it, removes what start made
#
# Why a bridge of its own: `docker run` on a stock dockerd creates a veth on docker0 and sets up
# the container's address and routes; a reference started with `--bridge none` skips all of
# that for default-network containers, so comparing pydockerd's bridged run with it compares
# different work (measured 2026-12-05 on this VM: dockerd's `run --rm busybox true` 115-129 ms
# with --bridge none, 244-296 ms on its own bridge). Here dockerd gets a bridge made for it
# (`-b`), and changes nothing else on the host: no iptables rules, no masquerading, ip_forward
# left as it is, cgroups under its own parent, its own containerd (started by dockerd under
# the exec root, since --exec-root is not the default). Never the machine's docker0, default
# socket or subnets.
#
# Knobs (environment): REFD_BASE (/tmp/pydref), REFD_BRIDGE (pydref0), REFD_CIDR (10.231.99.1/24).
# Needs Debian's docker.io (dockerd, containerd, runc) on PATH.
set -euo pipefail

base=${REFD_BASE:-/tmp/pydref}
bridge=${REFD_BRIDGE:-pydref0}
cidr=${REFD_CIDR:-10.231.99.1/24}
sock=$base/docker.sock
here=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$(command -v /opt/pydockerd/bin/python || command -v python3)}

start() {
    command -v dockerd >/dev/null || { echo "dockerd not found: apt-get install docker.io" >&2; exit 1; }
    if [ -e "$base/pid" ] && kill -0 "$(cat "$base/pid")" 2>/dev/null; then
        echo "unix://$sock"; return
    fi
    local make_bridge=
    if ! ip link show "$bridge" >/dev/null 2>&1; then
        # A subnet someone else routes is not ours to take.
        if ip -4 route show to match "${cidr%/*}" | grep -qv '^default'; then
            echo "$cidr overlaps a route on this host: set REFD_CIDR" >&2; exit 1
        fi
        make_bridge=1
    fi
    mkdir -p "$base"
    if [ -n "$make_bridge" ]; then
        ip link add "$bridge" type bridge
        ip addr add "$cidr" dev "$bridge"
        ip link set "$bridge" up
        touch "$base/bridge-made"
    fi
    setsid dockerd -H "unix://$sock" --data-root "$base/root" --exec-root "$base/exec" --pidfile "$base/pid" \
        -b "$bridge" --iptables=false --ip-masq=false --ip-forward=false --cgroup-parent pydref \
        >"$base/log" 2>&1 </dev/null &
    for _ in $(seq 150); do
        DOCKER_HOST="unix://$sock" docker version >/dev/null 2>&1 && break
        sleep 0.2
    done
    export DOCKER_HOST="unix://$sock"
    docker version >/dev/null || { echo "dockerd did not come up: see $base/log" >&2; exit 1; }
    if ! docker image inspect busybox:latest >/dev/null 2>&1; then
        "$python" "$here/scripts/busybox-image.py" -o "$base/busybox.tar"
        docker import "$base/busybox.tar" busybox:latest >/dev/null
    fi
    echo "unix://$sock"
}

stop() {
    if [ -e "$base/pid" ]; then
        pid=$(cat "$base/pid")
        ids=$(DOCKER_HOST="unix://$sock" docker ps -aq 2>/dev/null || true)
        [ -n "$ids" ] && DOCKER_HOST="unix://$sock" docker rm -f $ids >/dev/null
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    fi
    if [ -e "$base/bridge-made" ]; then
        ip link del "$bridge" 2>/dev/null || true
    fi
    for d in /sys/fs/cgroup/*/pydref /sys/fs/cgroup/pydref; do
        [ -d "$d" ] && rmdir "$d" 2>/dev/null || true
    done
    # Never rm -rf through a mount a crashed dockerd left behind.
    if grep -q " $base/" /proc/self/mountinfo; then
        echo "mounts remain under $base: not removing it" >&2; exit 1
    fi
    rm -rf --one-file-system "$base"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
