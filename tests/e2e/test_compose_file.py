"""docker-compose.yml runs pydockerd itself; `docker-compose config` must accept it.

The check really runs `docker-compose config` (Debian's docker-compose v1, installed by
scripts/test.sh); a missing tool fails the test instead of skipping it.
"""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from typing import Any

import pytest
import yaml

from tests.helpers import REPO

pytestmark = pytest.mark.e2e

COMPOSE = REPO / "docker-compose.yml"


def _compose_cmd() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
    if probe.returncode == 0:
        return ["docker", "compose"]
    pytest.fail("neither docker-compose nor `docker compose` is installed (scripts/test.sh installs it)")


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    assert COMPOSE.is_file(), "docker-compose.yml missing"
    env_dir = tmp_path_factory.mktemp("compose")
    r = subprocess.run(
        [*_compose_cmd(), "-f", str(COMPOSE), "config"],
        capture_output=True, text=True, timeout=120, cwd=REPO,
        # No daemon is needed for `config`; point DOCKER_HOST nowhere so nothing is contacted.
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "DOCKER_HOST": f"unix://{env_dir}/none.sock",
             "DOCKER_CONFIG": str(env_dir), "HOME": str(env_dir)},
    )
    assert r.returncode == 0, f"docker-compose config failed:\n{r.stderr}"
    assert "WARNING" not in r.stderr, r.stderr
    data = yaml.safe_load(r.stdout)
    assert isinstance(data, dict)
    return data


def test_compose_quiet_validation() -> None:
    r = subprocess.run([*_compose_cmd(), "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True,
                       timeout=120, cwd=REPO)
    assert r.returncode == 0 and r.stdout == "", r.stderr


def test_compose_runs_pydockerd_privileged(config: dict[str, Any]) -> None:
    svc = config["services"]["pydockerd"]
    assert svc.get("privileged") is True
    assert "build" in svc
    cmd = svc.get("command") or []
    cmd = cmd.split() if isinstance(cmd, str) else cmd
    entry = svc.get("entrypoint") or []
    entry = entry.split() if isinstance(entry, str) else entry
    argv = [*entry, *cmd]
    # The container runs ENTRYPOINT + CMD: compose's `entrypoint` replaces the image's
    # ENTRYPOINT and `command` its CMD. The image sets no ENTRYPOINT, so without one in the
    # compose file the first word of `command` is the program, and it must be pydockerd's
    # console script.
    image_entry = [ln for ln in (REPO / "Dockerfile").read_text().splitlines()
                   if ln.split()[:1] == ["ENTRYPOINT"]]
    assert entry or not image_entry, f"the image's {image_entry} would run before `command`"
    assert argv and argv[0] == "pydockerd", argv
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts.get("pydockerd") == "daemon.main:main", scripts
    hosts = [argv[i + 1] for i, a in enumerate(argv) if a in ("-H", "--host")]
    assert any(h.startswith("unix://") for h in hosts), hosts
    tcp = [h for h in hosts if h.startswith("tcp://")]
    assert tcp, "no TCP listener for 127.0.0.1:2375"
    for h in tcp:
        # The daemon refuses plain TCP off loopback: the compose file must not ask for it.
        if not h.startswith("tcp://127.0.0.1:"):
            assert "--tlsverify" in argv, f"{h} is plain TCP off loopback"


def test_compose_volumes_and_port(config: dict[str, Any]) -> None:
    svc = config["services"]["pydockerd"]
    targets = set()
    for v in svc.get("volumes", []):
        targets.add(v["target"] if isinstance(v, dict) else v.split(":")[1])
    assert "/var/lib/pydockerd" in targets, "data root not on a volume"
    assert any(t.startswith("/run/pydockerd") for t in targets), "socket dir not on a volume"
    assert "pydockerd-data" in (config.get("volumes") or {})
    if svc.get("network_mode") == "host":
        # Host networking: the daemon's own 127.0.0.1:2375 is the host's loopback.
        argv = " ".join(svc.get("command") or [])
        assert "tcp://127.0.0.1:2375" in argv
    else:
        published = [(p.get("host_ip"), str(p.get("published"))) for p in svc.get("ports", [])]
        assert ("127.0.0.1", "2375") in published, published


def test_dockerfile_installs_the_package() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert text.splitlines()[0].startswith("FROM python:3.11")
    assert "pip install" in text and "COPY" in text
