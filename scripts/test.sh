#!/usr/bin/env bash
# Install what the test suite needs and run all of it: ruff, unit tests and end-to-end
# tests against real pydockerd daemons (temp roots, own bridges, a leak check at the end).
# Exits non-zero when anything fails. Extra arguments go to pytest.
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/common.sh
need_root

set -e
apt_install ca-certificates python3 python3-venv busybox-static tini nftables iptables iproute2 \
    openssl docker-compose curl file util-linux zstd xz-utils bzip2 gzip docker-registry apache2-utils \
    systemd

# The stock docker CLI drives the daemon. Only the client is wanted: never start a dockerd.
if ! command -v docker >/dev/null 2>&1; then
    if apt-cache show docker-cli >/dev/null 2>&1; then
        apt_install docker-cli
    else
        # Debian's docker.io bundles dockerd: keep its service from starting.
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        apt_install docker.io || { rm -f /usr/sbin/policy-rc.d; exit 1; }
        rm -f /usr/sbin/policy-rc.d
        if [ -d /run/systemd/system ]; then
            systemctl disable --now docker.service docker.socket >/dev/null 2>&1 || true
        fi
    fi
fi
docker --version

# dockerode for tests/e2e/test_dockerode.py: Node and npm (Debian's, unless a Node with its own
# npm is there already), the locked packages from the npm registry.
if ! command -v npm >/dev/null 2>&1; then
    apt_install nodejs npm
fi
echo "+ npm ci (tests/e2e/dockerode)"
(cd tests/e2e/dockerode && npm ci --no-audit --no-fund --silent)

ensure_venv
echo "+ pip install '.[test]' (into $VENV)"
"$VENV/bin/python" -m pip install -q '.[test]'
set +e

status=0
echo "+ ruff check ."
if ! "$VENV/bin/ruff" check .; then
    echo "ruff check failed" >&2
    status=1
fi

out="$(mktemp /tmp/pydockerd-pytest.XXXXXX)"
echo "+ pytest tests/unit tests/e2e"
"$VENV/bin/python" -m pytest tests/unit tests/e2e -p no:cacheprovider -ra --timeout 300 "$@" \
    </dev/null 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
summary="$(grep -E '^=+ .*(passed|failed|error|no tests ran).* in [0-9.]+s' "$out" | tail -1)"
rm -f "$out"

case "$rc" in
0) ;;
5)
    echo "pytest collected no tests: that is a failure here" >&2
    status=1
    ;;
*) status=1 ;;
esac

# docker-py's own integration tests against a daemon of their own (its summary line says
# passed/baseline); fails when a baseline test fails that expected-failures.txt does not name.
echo "+ docker-py conformance (tests/conformance/dockerpy)"
start=$SECONDS
"$VENV/bin/python" -m tests.conformance.dockerpy.check </dev/null 2>&1 | grep -v "^WARNING: Location"
conformance_rc=${PIPESTATUS[0]}
echo "docker-py conformance: exit $conformance_rc after $((SECONDS - start)) s"
[ "$conformance_rc" = 0 ] || status=1
# Repeat pytest's closing line last, so it is the last thing a reader (or CI) sees.
echo "${summary:-pytest printed no summary (exit $rc)}"
exit "$status"
