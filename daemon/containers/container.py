"""A container's record: what `docker inspect` and `docker ps` show, and what the store keeps."""

from __future__ import annotations

import asyncio
import math
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemon.containers import health
from daemon.util.timeutil import ZERO_TIME, parse_timestamp


def new_state() -> dict[str, Any]:
    return {"Status": "created", "Running": False, "Paused": False, "Restarting": False, "OOMKilled": False,
            "Dead": False, "Pid": 0, "ExitCode": 0, "Error": "", "StartedAt": ZERO_TIME, "FinishedAt": ZERO_TIME}


@dataclass
class Container:
    id: str
    name: str  # with the leading "/"
    created: str
    path: str
    args: list[str]
    config: dict  # Docker's container Config (Image as the user gave it)
    host_config: dict
    image_id: str
    state: dict = field(default_factory=new_state)
    restart_count: int = 0
    manually_stopped: bool = False
    driver: str = "overlay2"
    # The image's top layer when the container was made: `rmi -f` may delete the image of a
    # stopped container (as dockerd), and the container still needs its layers to start.
    top_chain: str = ""
    networks: dict = field(default_factory=dict)
    mount_points: list = field(default_factory=list)  # see daemon.mounts
    # runtime-only (not persisted)
    monitor: Any = None
    pending_attaches: list[tuple[asyncio.Future, bool, bool, bool]] = field(default_factory=list)
    exit_waiters: list[asyncio.Future] = field(default_factory=list)
    removed_waiters: list[asyncio.Future] = field(default_factory=list)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    removing: bool = False
    exec_ids: list[str] = field(default_factory=list)  # running execs, in start order (inspect's ExecIDs)
    restart_task: asyncio.Task | None = None
    watch_task: asyncio.Task | None = None

    _PERSISTED = ("id", "name", "created", "path", "args", "config", "host_config", "image_id", "state",
                  "restart_count", "manually_stopped", "driver", "networks", "mount_points", "top_chain")

    def event_attrs(self, **extra: str) -> dict[str, str]:
        """The Actor attributes of this container's events: image, name, labels, then `extra`."""
        attrs = {"image": self.config.get("Image", ""), "name": self.name.lstrip("/")}
        attrs.update(self.labels)
        attrs.update(extra)
        return attrs

    def doc(self) -> dict:
        return {k: getattr(self, k) for k in self._PERSISTED}

    @classmethod
    def from_doc(cls, doc: dict) -> Container:
        return cls(**{k: doc[k] for k in cls._PERSISTED if k in doc})

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def running(self) -> bool:
        return bool(self.state["Running"])

    @property
    def labels(self) -> dict[str, str]:
        return self.config.get("Labels") or {}

    @property
    def tty(self) -> bool:
        return bool(self.config.get("Tty"))

    @property
    def network_mode(self) -> str:
        mode = self.host_config.get("NetworkMode") or "default"
        return "bridge" if mode == "default" else mode

    def status_text(self, now: float | None = None) -> str:
        """The STATUS column of `docker ps`."""
        return self.status(time.time() if now is None else now)[0]

    def status(self, now: float) -> tuple[str, float | None]:
        """The STATUS column of `docker ps` at `now`, and when it next reads otherwise by time alone
        ("Up 3 seconds": it counts whole seconds); None when it shows no time."""
        st = self.state
        if self.removing:
            return "Removal In Progress", None
        if st["Dead"]:
            return "Dead", None
        if st["Restarting"]:
            since = parse_timestamp(st["FinishedAt"])
            return f"Restarting ({st['ExitCode']}) {human_duration(now - since)} ago", _next_second(since, now)
        if st["Running"]:
            since = parse_timestamp(st["StartedAt"])
            text = "Up " + human_duration(now - since)
            if st["Paused"]:
                text += " (Paused)"
            elif st.get("Health"):
                text = f"{text} ({health.status_text(st['Health'])})"
            return text, _next_second(since, now)
        if st["FinishedAt"] == ZERO_TIME:
            return "Created", None
        since = parse_timestamp(st["FinishedAt"])
        return f"Exited ({st['ExitCode']}) {human_duration(now - since)} ago", _next_second(since, now)

    @property
    def command_text(self) -> str:
        parts = [self.path, *self.args] if self.path else list(self.args)
        return " ".join(shlex.quote(p) if (" " in p or not p) else p for p in parts)


def _next_second(since: float, now: float) -> float:
    """When the whole seconds from `since` to the time go up next, after `now`."""
    return since + math.floor(now - since) + 1


def human_duration(seconds: float) -> str:
    """Go's units.HumanDuration, which `docker ps` uses."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    m = s // 60
    if m == 1:
        return "About a minute"
    if m < 60:
        return f"{m} minutes"
    h = round(s / 3600)
    if h == 1:
        return "About an hour"
    if h < 48:
        return f"{h} hours"
    if h < 24 * 7 * 2:
        return f"{h // 24} days"
    if h < 24 * 30 * 2:
        return f"{h // 24 // 7} weeks"
    if h < 24 * 365 * 2:
        return f"{h // 24 // 30} months"
    return f"{h // 24 // 365} years"


def paths(data_root: Path, cid: str) -> dict[str, Path]:
    base = data_root / "containers" / cid
    return {"dir": base, "hostname": base / "hostname", "hosts": base / "hosts",
            "resolv": base / "resolv.conf", "log": base / f"{cid}-json.log", "init": base / "init"}
