#!/usr/bin/env bash
# Install pydockerd on a fresh Debian/Ubuntu machine and start it:
#   unix:///run/pydockerd.sock and tcp://127.0.0.1:2375, log in /var/log/pydockerd.log.
# Under systemd it becomes the pydockerd.service unit; otherwise it runs in the background.
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
ARGS=(-H "unix://$SOCK" -H tcp://127.0.0.1:2375)
LOG=/var/log/pydockerd.log

ping_ok() { [ "$(curl -s --max-time 2 --unix-socket "$SOCK" http://localhost/_ping 2>/dev/null)" = OK ]; }

if ping_ok; then
    echo "pydockerd is already running on $SOCK"
    exit 0
fi

if [ -d /run/systemd/system ] && [ "$(ps -p 1 -o comm=)" = systemd ]; then
    cat >/etc/systemd/system/pydockerd.service <<UNIT
[Unit]
Description=pydockerd, a Docker-Engine-API-compatible container engine
After=network-online.target
Wants=network-online.target

[Service]
ExecStart=$VENV/bin/pydockerd ${ARGS[*]}
# Containers outlive the daemon (live restore): stop only the daemon process itself.
KillMode=process
Restart=on-failure
StandardOutput=append:$LOG
StandardError=append:$LOG

[Install]
WantedBy=multi-user.target
UNIT
    systemctl daemon-reload
    systemctl enable --now pydockerd.service
else
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
tail -20 "$LOG" >&2 || true
exit 1
