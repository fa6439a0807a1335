#!/usr/bin/env bash
# Install pydockerd on a fresh Debian/Ubuntu machine and start it on unix:///run/pydockerd.sock
# only. TCP is opt-in, as with dockerd: another ListenStream= in a drop-in of pydockerd.socket
# under systemd, `-H tcp://...` otherwise (TLS required off loopback).
# Under systemd: the units contrib/systemd/pydockerd.{socket,service} (socket activation,
# `journalctl -u pydockerd`); otherwise it runs in the background, log in /var/log/pydockerd.log.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/common.sh
need_root

apt_install ca-certificates python3 python3-venv iproute2 nftables iptables tini busybox-static curl
ensure_venv
echo "+ pip install . (into $VENV)"
"$VENV/bin/python" -m pip install -q .
ln -sf "$VENV/bin/pydockerd" /usr/local/bin/pydockerd

SOCK=/run/pydockerd.sock
ARGS=(-H "unix://$SOCK")
LOG=/var/log/pydockerd.log

ping_ok() { [ "$(curl -s --max-time 2 --unix-socket "$SOCK" http://localhost/_ping 2>/dev/null)" = OK ]; }

if ping_ok; then
    echo "pydockerd is already running on $SOCK"
    exit 0
fi

if [ -d /run/systemd/system ] && [ "$(ps -p 1 -o comm=)" = systemd ]; then
    # The socket's group: members may use the API (root-equivalent), as dockerd's docker group.
    getent group docker >/dev/null || groupadd --system docker
    install -m 0644 contrib/systemd/pydockerd.service contrib/systemd/pydockerd.socket /etc/systemd/system/
    systemctl daemon-reload
    systemctl enable pydockerd.socket pydockerd.service
    systemctl restart pydockerd.socket
    systemctl start pydockerd.service
    show_log() { journalctl -u pydockerd -n 20 --no-pager; }
    LOG="journalctl -u pydockerd"
else
    show_log() { tail -20 "$LOG"; }
    # setsid: its own session, so closing this shell does not take the daemon down.
    setsid nohup "$VENV/bin/pydockerd" "${ARGS[@]}" >>"$LOG" 2>&1 </dev/null &
fi

for _ in $(seq 1 100); do
    if ping_ok; then
        echo "pydockerd is running: export DOCKER_HOST=unix://$SOCK  (log: $LOG)"
        exit 0
    fi
    sleep 0.2
done
echo "pydockerd did not answer on $SOCK within 20s; last lines of $LOG:" >&2
show_log >&2 || true
exit 1
