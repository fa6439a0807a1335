"""What each config-only instruction does to the image config (ENV, LABEL, CMD, ENTRYPOINT,
EXPOSE, VOLUME, USER, WORKDIR, SHELL, STOPSIGNAL, HEALTHCHECK, ONBUILD, MAINTAINER), and
the build arguments a stage sees. Pure functions of the typed instruction and the config, as
dockerd's dispatchers: no containers, no files."""

from __future__ import annotations

import posixpath
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field

from daemon.build.dockerfile import Instruction
from daemon.build.shellwords import process_word
from daemon.containers import health_config
from daemon.errors import InvalidParameter
from daemon.images.dockerfile_changes import expose_ports

DEFAULT_SHELL = ["/bin/sh", "-c"]
# Usable without an ARG line, and kept out of the image history (dockerd's builtinAllowedBuildArgs).
PROXY_ARGS = {"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
              "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"}


@dataclass
class BuildArgs:
    """The --build-arg values and which of them a stage has declared (ARG)."""

    given: dict[str, str | None]
    meta: dict[str, str | None] = field(default_factory=dict)  # ARGs before the first FROM
    declared: dict[str, str | None] = field(default_factory=dict)  # this stage's ARGs, with values
    consumed: set[str] = field(default_factory=set)

    def declare_meta(self, name: str, default: str | None) -> None:
        self.consumed.add(name)
        value = self.given.get(name) if self.given.get(name) is not None else default
        self.meta[name] = value

    def new_stage(self) -> None:
        self.declared = {}

    def declare(self, name: str, default: str | None) -> None:
        self.consumed.add(name)
        if self.given.get(name) is not None:
            value: str | None = self.given[name]
        elif default is not None:
            value = default
        else:
            value = self.meta.get(name)  # `ARG NAME` re-declares a meta ARG with its value
        self.declared[name] = value

    def in_effect(self, env: Mapping[str, str]) -> dict[str, str]:
        """The declared args with a value that ENV does not override, plus the proxy args given."""
        out = {k: v for k, v in self.declared.items() if v is not None and k not in env}
        for k in PROXY_ARGS:
            v = self.given.get(k)
            if v is not None and k not in env and k not in out:
                out[k] = v
        return out

    def unconsumed(self) -> list[str]:
        return sorted(k for k in self.given if k not in self.consumed and k not in PROXY_ARGS)


def env_map(config: Mapping) -> dict[str, str]:
    out = {}
    for item in config.get("Env") or []:
        k, _, v = item.partition("=")
        out[k] = v
    return out


def expansion_env(config: Mapping, args: BuildArgs) -> dict[str, str]:
    """What `$VAR` sees in an instruction: the config's ENV over the args in effect."""
    env = env_map(config)
    return {**args.in_effect(env), **env}


def key_values(ins: Instruction, env: Mapping[str, str], escape: str) -> list[tuple[str, str]]:
    """ENV and LABEL: `k=v k2="v 2"` or the old `k v w` form, quotes removed, variables expanded."""
    words = ins.args
    if len(words) % 2:
        raise InvalidParameter(f"{ins.name.upper()} requires at least one argument")
    out = []
    for i in range(0, len(words), 2):
        key = process_word(words[i], env, escape)
        value = process_word(words[i + 1], env, escape)
        if not key:
            raise InvalidParameter(f"{ins.name.upper()} names can not be blank")
        out.append((key, value))
    return out


def set_env(config: dict, pairs: list[tuple[str, str]]) -> None:
    env = list(config.get("Env") or [])
    for key, value in pairs:
        env = [e for e in env if e.partition("=")[0] != key] + [f"{key}={value}"]
    config["Env"] = env


def command_form(ins: Instruction, shell: list[str]) -> list[str]:
    """RUN, CMD and ENTRYPOINT: the exec form as written, the shell form through SHELL."""
    if ins.json:
        return list(ins.args)
    text = " ".join(ins.args).strip()
    return [*shell, text] if text else []


def parse_duration_ns(value: str, what: str) -> int:
    """Go's time.ParseDuration for the HEALTHCHECK flags, the builder's wording around it."""
    try:
        return health_config.parse_go_duration(value) if value else 0
    except InvalidParameter as e:
        raise InvalidParameter(f"Error parsing {what}: {e.message}") from None


def healthcheck(ins: Instruction, shell: list[str]) -> dict:
    """HEALTHCHECK [flags] CMD ... | NONE as the config's Healthcheck (running probes is not ours)."""
    words = list(ins.args)
    kind = words[0].upper() if words else ""
    if kind == "NONE":
        if len(words) > 1 or ins.flags:
            raise InvalidParameter("HEALTHCHECK NONE takes no arguments")
        return {"Test": ["NONE"]}
    if kind != "CMD":
        raise InvalidParameter(f"Unknown type \"{kind}\" in HEALTHCHECK (try CMD)")
    rest = words[1:]
    if ins.json:
        test = ["CMD", *rest]
    else:
        text = " ".join(rest).strip()
        if not text:
            raise InvalidParameter("Missing command after HEALTHCHECK CMD")
        test = ["CMD-SHELL", text]
    hc: dict = {"Test": test}
    for flag, key in (("interval", "Interval"), ("timeout", "Timeout"), ("start-period", "StartPeriod"),
                      ("start-interval", "StartInterval")):
        if flag in ins.flags:
            ns = parse_duration_ns(ins.flags[flag], f"--{flag}")
            if ns and ns < 1_000_000:
                raise InvalidParameter(f"Interval \"{flag}\" cannot be less than 1ms")
            if ns:
                hc[key] = ns
    if "retries" in ins.flags:
        try:
            retries = int(ins.flags["retries"])
        except ValueError:
            raise InvalidParameter(f"invalid --retries: {ins.flags['retries']!r}") from None
        if retries < 1:
            raise InvalidParameter(f"--retries cannot be 0 or negative ({retries})")
        hc["Retries"] = retries
    return hc


def check_signal(value: str) -> None:
    name = value.upper()
    if name.isdigit():
        if 0 < int(name) < 65:
            return
    else:
        short = name[3:] if name.startswith("SIG") else name
        if hasattr(signal, "SIG" + short) or short.startswith("RTMIN") or short.startswith("RTMAX"):
            return
    raise InvalidParameter(f"Invalid signal: {value}")


def workdir(current: str, new: str) -> str:
    if not new.startswith("/"):
        new = posixpath.join(current or "/", new)
    return posixpath.normpath(new) if new != "/" else "/"


@dataclass
class ConfigStep:
    """The effect of a config-only instruction: the new config and the history comment."""

    config: dict
    comment: str
    shell: list[str] | None = None  # SHELL changes it
    cmd_set: bool = False


def apply_config(ins: Instruction, config: dict, env: Mapping[str, str], escape: str, shell: list[str],
                 cmd_set: bool) -> ConfigStep:
    """The config after a config-only instruction (ARG is the executor's: it touches BuildArgs)."""
    cfg = {**config}
    name = ins.name
    word = lambda w: process_word(w, env, escape)  # noqa: E731 - a local shorthand
    if name == "env":
        pairs = key_values(ins, env, escape)
        set_env(cfg, pairs)
        return ConfigStep(cfg, "ENV " + " ".join(f"{k}={v}" for k, v in pairs), cmd_set=cmd_set)
    if name == "label":
        pairs = key_values(ins, env, escape)
        cfg["Labels"] = {**(cfg.get("Labels") or {}), **dict(pairs)}
        return ConfigStep(cfg, "LABEL " + " ".join(f"{k}={v}" for k, v in pairs), cmd_set=cmd_set)
    if name == "cmd":
        cfg["Cmd"] = command_form(ins, shell)
        return ConfigStep(cfg, "CMD " + _json(cfg["Cmd"]), cmd_set=True)
    if name == "entrypoint":
        cfg["Entrypoint"] = command_form(ins, shell) or None
        if not cmd_set:
            cfg["Cmd"] = None  # dockerd: an ENTRYPOINT drops the CMD inherited from the base
        return ConfigStep(cfg, "ENTRYPOINT " + _json(cfg["Entrypoint"] or []), cmd_set=cmd_set)
    if name == "expose":
        ports = expose_ports([word(w) for w in " ".join(ins.args).split()])
        cfg["ExposedPorts"] = {**(cfg.get("ExposedPorts") or {}), **{p: {} for p in ports}}
        return ConfigStep(cfg, "EXPOSE " + " ".join(sorted(ports)), cmd_set=cmd_set)
    if name == "volume":
        paths = [word(w) for w in (ins.args if ins.json else " ".join(ins.args).split())]
        if not paths or any(not p.strip() for p in paths):
            raise InvalidParameter("VOLUME specified can not be an empty string")
        cfg["Volumes"] = {**(cfg.get("Volumes") or {}), **{p: {} for p in paths}}
        return ConfigStep(cfg, "VOLUME " + _json(paths), cmd_set=cmd_set)
    if name == "user":
        cfg["User"] = word(ins.args[0])
        return ConfigStep(cfg, "USER " + cfg["User"], cmd_set=cmd_set)
    if name == "workdir":
        cfg["WorkingDir"] = workdir(cfg.get("WorkingDir") or "", word(ins.args[0]))
        return ConfigStep(cfg, "WORKDIR " + cfg["WorkingDir"], cmd_set=cmd_set)
    if name == "shell":
        if not ins.json:
            raise InvalidParameter("SHELL requires the arguments to be in JSON form")
        cfg["Shell"] = list(ins.args)
        return ConfigStep(cfg, "SHELL " + _json(cfg["Shell"]), shell=list(ins.args), cmd_set=cmd_set)
    if name == "stopsignal":
        sig = word(ins.args[0])
        check_signal(sig)
        cfg["StopSignal"] = sig
        return ConfigStep(cfg, "STOPSIGNAL " + sig, cmd_set=cmd_set)
    if name == "healthcheck":
        cfg["Healthcheck"] = healthcheck(ins, shell)
        return ConfigStep(cfg, "HEALTHCHECK " + _json(cfg["Healthcheck"]["Test"]), cmd_set=cmd_set)
    if name == "onbuild":
        assert ins.sub is not None
        cfg["OnBuild"] = [*(cfg.get("OnBuild") or []), ins.sub.original]
        return ConfigStep(cfg, "ONBUILD " + ins.sub.original, cmd_set=cmd_set)
    if name == "maintainer":
        return ConfigStep(cfg, "MAINTAINER " + " ".join(ins.args), cmd_set=cmd_set)
    raise InvalidParameter(f"unknown instruction: {name.upper()}")


def _json(value: list[str]) -> str:
    import json

    return json.dumps(value, separators=(",", ":"))


def parse_arg(ins: Instruction, env: Mapping[str, str], escape: str) -> list[tuple[str, str | None]]:
    """ARG NAME[=default] ... (defaults expanded)."""
    out = []
    for raw in ins.args:
        name, sep, default = raw.partition("=")
        if not name:
            raise InvalidParameter("ARG requires at least one argument")
        out.append((name, process_word(default, env, escape) if sep else None))
    return out
