"""`docker import -c` / `docker commit -c`: the Dockerfile instructions that may change an image config."""

from __future__ import annotations

import json
import shlex

from daemon.containers import health_config
from daemon.errors import InvalidParameter

ALLOWED = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "HEALTHCHECK", "LABEL", "ONBUILD", "STOPSIGNAL", "USER", "VOLUME",
           "WORKDIR")


def _json_or_shell(args: str, shell: bool) -> list[str]:
    s = args.strip()
    if s.startswith("["):
        try:
            value = json.loads(s)
        except (ValueError, RecursionError):  # not JSON (or absurdly nested): the shell form, as dockerd
            value = None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    return ["/bin/sh", "-c", s] if shell else [s]


def _pairs(instr: str, args: str) -> list[tuple[str, str]]:
    try:
        words = shlex.split(args, posix=True)
    except ValueError as e:
        raise InvalidParameter(f"{instr}: {e}") from e
    if not words:
        raise InvalidParameter(f"{instr} requires at least one argument")
    if "=" not in words[0]:
        # legacy form: ENV key value with spaces
        key, _, value = args.strip().partition(" ")
        return [(key, value.strip())]
    out = []
    for w in words:
        if "=" not in w:
            raise InvalidParameter(f"{instr} names can not be blank / syntax error: {w!r} must be key=value")
        k, v = w.split("=", 1)
        if not k:
            raise InvalidParameter(f"{instr} names can not be blank")
        out.append((k, v))
    return out


def expose_ports(words: list[str]) -> list[str]:
    """EXPOSE 80 90/udp 8000-8002 as ExposedPorts keys (a Dockerfile's, a commit/import change's)."""
    out = []
    for w in words:
        port, _, proto = w.partition("/")
        proto = (proto or "tcp").lower()
        if proto not in ("tcp", "udp", "sctp"):
            raise InvalidParameter(f"invalid proto: {proto}")
        lo, _, hi = port.partition("-")
        try:
            a = int(lo)
            b = int(hi) if hi else a
        except ValueError:
            raise InvalidParameter(f"invalid containerPort: {port}") from None
        if not (0 < a <= 65535 and a <= b <= 65535):
            raise InvalidParameter(f"invalid containerPort: {port}")
        out += [f"{p}/{proto}" for p in range(a, b + 1)]
    return out


def apply(config: dict, changes: list[str]) -> dict:
    """Returns a copy of an image's `config` section with the instructions applied."""
    cfg = json.loads(json.dumps(config))
    for line in changes:
        line = line.strip()
        if not line:
            continue
        instr, _, args = line.partition(" ")
        instr = instr.upper()
        args = args.strip()
        if instr not in ALLOWED:
            raise InvalidParameter(f"{instr} is not a valid change command")
        if instr == "CMD":
            cfg["Cmd"] = _json_or_shell(args, True)
        elif instr == "ENTRYPOINT":
            cfg["Entrypoint"] = _json_or_shell(args, True)
            # dockerd resets CMD inherited from the base when ENTRYPOINT changes; keep the
            # one set earlier in the same change list.
        elif instr == "ENV":
            env = list(cfg.get("Env") or [])
            for k, v in _pairs("ENV", args):
                env = [e for e in env if e.split("=", 1)[0] != k] + [f"{k}={v}"]
            cfg["Env"] = env
        elif instr == "LABEL":
            labels = dict(cfg.get("Labels") or {})
            labels.update(_pairs("LABEL", args))
            cfg["Labels"] = labels
        elif instr == "EXPOSE":
            ports = dict(cfg.get("ExposedPorts") or {})
            ports.update({p: {} for p in expose_ports(args.split())})
            cfg["ExposedPorts"] = ports
        elif instr == "VOLUME":
            vols = dict(cfg.get("Volumes") or {})
            paths = _json_or_shell(args, False) if args.startswith("[") else args.split()
            for v in paths:
                if not v:
                    raise InvalidParameter("VOLUME specified can not be an empty string")
                vols[v] = {}
            cfg["Volumes"] = vols
        elif instr == "WORKDIR":
            cur = cfg.get("WorkingDir") or "/"
            cfg["WorkingDir"] = args if args.startswith("/") else cur.rstrip("/") + "/" + args
        elif instr == "USER":
            cfg["User"] = args
        elif instr == "STOPSIGNAL":
            cfg["StopSignal"] = args
        elif instr == "HEALTHCHECK":
            cfg["Healthcheck"] = health_config.parse_instruction(args)
        elif instr == "ONBUILD":
            cfg["OnBuild"] = list(cfg.get("OnBuild") or []) + [args]
    return cfg
