"""A container's mount points, from its create request, as dockerd computes them.

Sources, in dockerd's order (later ones win for the same destination, except that two explicit
mounts on one destination are an error): `--volumes-from` (HostConfig.VolumesFrom), `-v`
(HostConfig.Binds), `--mount` (HostConfig.Mounts), then an anonymous volume for each
Config.Volumes path (image VOLUME and `-v /path`) that nothing else covers. `--tmpfs`
(HostConfig.Tmpfs) is not a mount point: dockerd does not show it in `.Mounts`.

A mount point is a plain dict, persisted with the container:
    Type        "volume" | "bind" | "tmpfs"
    Name        volume name ("" until an anonymous volume is created)
    Source      host path of a bind ("" for volumes: their path comes from the volume service)
    Destination clean absolute path in the container
    Driver      "local" for volumes
    Mode        the mode string as the user wrote it ("ro", "rw,z", ...)
    RW          bool
    Propagation "rprivate"... for binds, "" otherwise
    CopyData    first use copies the image's content into an empty volume
    Anonymous   the volume was made for this container (removed with `rm -v`)
    Create      bind source is created when missing (-v, not --mount)
    TmpfsOptions  mount data of a --mount type=tmpfs
"""

from __future__ import annotations

import itertools
import os
import posixpath
import secrets
from collections.abc import Callable
from typing import Any

from daemon.errors import InvalidParameter
from storage.volumes import NAME_RE

PROPAGATIONS = ("private", "rprivate", "slave", "rslave", "shared", "rshared")
_RW_MODES = ("ro", "rw")
_LABEL_MODES = ("z", "Z")
_COPY_MODES = ("nocopy",)
_CONSISTENCY = ("consistent", "cached", "delegated")
# Where dockerd puts its own files: a user mount on one of these replaces ours.
DEFAULT_TMPFS_OPTIONS = ("noexec", "nosuid", "nodev")
_TMPFS_FLAG_PAIRS = {"exec": "noexec", "noexec": "exec", "suid": "nosuid", "nosuid": "suid", "dev": "nodev",
                     "nodev": "dev", "ro": "rw", "rw": "ro", "atime": "noatime", "noatime": "atime"}

LookupMounts = Callable[[str], list[dict]]


def _valid_mode(mode: str) -> bool:
    if mode == "":
        return True
    counts: dict[str, int] = {}
    for o in mode.split(","):
        for kind, words in (("rw", _RW_MODES), ("label", _LABEL_MODES), ("prop", PROPAGATIONS),
                            ("copy", _COPY_MODES), ("cons", _CONSISTENCY)):
            if o in words:
                counts[kind] = counts.get(kind, 0) + 1
                break
        else:
            return False
    return all(n <= 1 for n in counts.values())


def _check_target(target: str, kind: str) -> str:
    if not target:
        raise InvalidParameter(f'invalid mount config for type "{kind}": field Target must not be empty')
    if not target.startswith("/"):
        raise InvalidParameter(f"invalid mount config for type \"{kind}\": invalid mount path: '{target}' "
                               "mount path must be absolute")
    clean = posixpath.normpath(target)
    if clean.startswith("//"):
        clean = "/" + clean.lstrip("/")
    if clean == "/":
        raise InvalidParameter(f"invalid mount config for type \"{kind}\": invalid specification: "
                               "destination can't be '/'")
    return clean


def _point(kind: str, dest: str, *, name: str = "", source: str = "", rw: bool = True, mode: str = "",
           propagation: str = "", copy_data: bool = True, create: bool = False, tmpfs: str = "") -> dict:
    return {"Type": kind, "Name": name, "Source": source, "Destination": dest,
            "Driver": "local" if kind == "volume" else "", "Mode": mode, "RW": rw, "Propagation": propagation,
            "CopyData": copy_data, "Anonymous": kind == "volume" and not name, "Create": create,
            "TmpfsOptions": tmpfs}


def parse_bind(raw: str) -> dict:
    """One HostConfig.Binds entry (`-v src:dst[:mode]`), like dockerd's ParseMountRaw."""
    if not isinstance(raw, str):
        raise InvalidParameter("invalid volume specification: expected a string")
    arr = raw.split(":", 3)
    if arr[0] == "" or len(arr) > 3:
        raise InvalidParameter(f"invalid volume specification: '{raw}'")
    mode = ""
    if len(arr) == 1:
        source, target = "", arr[0]
    elif len(arr) == 2:
        if _valid_mode(arr[1]):
            raise InvalidParameter(f"invalid volume specification: '{raw}'")
        source, target = arr
    else:
        source, target, mode = arr
    if not _valid_mode(mode):
        raise InvalidParameter(f"invalid mode: {mode}")
    words = mode.split(",") if mode else []
    kind = "bind" if source.startswith("/") else "volume"
    try:
        dest = _check_target(target, kind)
    except InvalidParameter as e:
        raise InvalidParameter(f"invalid volume specification: '{raw}': {e.message}") from None
    rw = "ro" not in words
    if kind == "bind":
        prop = next((w for w in words if w in PROPAGATIONS), "rprivate")
        return _point("bind", dest, source=posixpath.normpath(source), rw=rw, mode=mode, propagation=prop,
                      create=True)
    if source:
        _check_volume_name(source)
    # dockerd's setBindModeIfNull: a -v volume of the local driver shows Mode "z" when none is given.
    return _point("volume", dest, name=source, rw=rw, mode=mode or "z", copy_data="nocopy" not in words)


def _check_volume_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise InvalidParameter(f'create {name}: "{name}" includes invalid characters for a local volume name, '
                               'only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host '
                               "directory, use absolute path")


def parse_mount(spec: Any) -> dict:
    """One HostConfig.Mounts entry (`--mount type=...`), like dockerd's ParseMountSpec."""
    if not isinstance(spec, dict):
        raise InvalidParameter("json: cannot unmarshal into Go struct field HostConfig.Mounts")
    kind = spec.get("Type") or ""
    source = spec.get("Source") or ""
    ro = bool(spec.get("ReadOnly"))
    bind_opts = spec.get("BindOptions")
    vol_opts = spec.get("VolumeOptions")
    tmpfs_opts = spec.get("TmpfsOptions")
    if kind not in ("bind", "volume", "tmpfs"):
        raise InvalidParameter(f'invalid mount config for type "{kind}": mount type unknown')
    dest = _check_target(spec.get("Target") or "", kind)

    def bad(msg: str) -> InvalidParameter:
        return InvalidParameter(f'invalid mount config for type "{kind}": {msg}')

    if kind == "bind":
        if not source:
            raise bad("field Source must not be empty")
        if vol_opts:
            raise bad("field VolumeOptions must not be specified")
        prop = (bind_opts or {}).get("Propagation") or ""
        if prop and prop not in PROPAGATIONS:
            raise bad(f"invalid propagation mode: {prop}")
        if not source.startswith("/"):
            raise bad(f"invalid mount path: '{source}' mount path must be absolute")
        create = bool((bind_opts or {}).get("CreateMountpoint"))
        if not create and not os.path.lexists(source):
            raise bad(f"bind source path does not exist: {source}")
        return _point("bind", dest, source=posixpath.normpath(source), rw=not ro, propagation=prop or "rprivate",
                      create=create)
    if kind == "volume":
        if bind_opts:
            raise bad("field BindOptions must not be specified")
        if ro and not source:
            raise bad("must not set ReadOnly mode when using anonymous volumes")
        if source:
            _check_volume_name(source)
        nocopy = bool((vol_opts or {}).get("NoCopy"))
        mp = _point("volume", dest, name=source, rw=not ro, mode="z", copy_data=not nocopy)
        driver_cfg = (vol_opts or {}).get("DriverConfig") or {}
        # For the volume's creation if it does not exist yet (--mount volume-label=, volume-opt=).
        mp["Driver"] = driver_cfg.get("Name") or "local"
        mp["VolumeLabels"] = (vol_opts or {}).get("Labels") or None
        mp["VolumeOptions"] = driver_cfg.get("Options") or None
        return mp
    if bind_opts:
        raise bad("field BindOptions must not be specified")
    if source:
        raise bad("field Source must not be specified")
    return _point("tmpfs", dest, rw=not ro, tmpfs=_tmpfs_data(tmpfs_opts or {}, ro, bad))


def _tmpfs_data(opts: dict, ro: bool, bad: Callable[[str], InvalidParameter]) -> str:
    raw = ["ro"] if ro else []
    mode = opts.get("Mode") or 0
    if mode:
        raw.append(f"mode={mode:o}")
    size = opts.get("SizeBytes") or 0
    if not isinstance(size, int) or size < 0:
        raise bad(f"invalid tmpfs size: {size}")
    if size:
        suffix = ""
        for s, div in (("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10)):
            if size % div == 0:
                size, suffix = size // div, s
                break
        raw.append(f"size={size}{suffix}")
    for opt in opts.get("Options") or []:
        if not isinstance(opt, list) or not 1 <= len(opt) <= 2 or opt[0] not in ("exec", "noexec"):
            raise bad(f"invalid option: {opt[0] if isinstance(opt, list) and opt else opt}")
        raw.append("=".join(opt))
    return ",".join(raw)


def parse_volumes_from(spec: str) -> tuple[str, str]:
    if not isinstance(spec, str) or not spec:
        raise InvalidParameter("volumes-from specification cannot be an empty string")
    ref, _, mode = spec.partition(":")
    if not mode:
        return ref, "rw"
    words = mode.split(",")
    if not _valid_mode(mode) or any(w in PROPAGATIONS or w in _COPY_MODES for w in words):
        raise InvalidParameter(f"invalid mode: {mode}")
    return ref, mode


def parse(config: dict, host_config: dict, other_mounts: LookupMounts) -> list[dict]:
    """The container's mount points (anonymous volumes still without a name), or InvalidParameter.

    `other_mounts(ref)` returns the mount points of another container (--volumes-from) or raises
    NotFound.
    """
    points: dict[str, dict] = {}
    for spec in host_config.get("VolumesFrom") or []:
        ref, mode = parse_volumes_from(spec)
        for mp in other_mounts(ref):
            if mp["Type"] == "tmpfs":
                continue
            copied = dict(mp, Anonymous=False, CopyData=False)
            copied["RW"] = mp["RW"] and "ro" not in mode.split(",")
            points[mp["Destination"]] = copied
    explicit: set[str] = set()
    # Parsed one at a time: a duplicate is reported before a later entry's own error.
    for mp in itertools.chain((parse_bind(raw) for raw in host_config.get("Binds") or []),
                              (parse_mount(spec) for spec in host_config.get("Mounts") or [])):
        if mp["Destination"] in explicit:
            raise InvalidParameter(f"Duplicate mount point: {mp['Destination']}")
        explicit.add(mp["Destination"])
        points[mp["Destination"]] = mp
    tmpfs = host_config.get("Tmpfs") or {}
    if not isinstance(tmpfs, dict):
        raise InvalidParameter("json: cannot unmarshal into Go struct field HostConfig.Tmpfs")
    tmpfs_dests = set()
    for dest in tmpfs:
        clean = _check_target(dest, "tmpfs")
        if clean in explicit:
            raise InvalidParameter(f"Duplicate mount point: {clean}")
        tmpfs_dests.add(clean)
    for dest in config.get("Volumes") or {}:
        clean = _check_target(dest, "volume")
        if clean in points or clean in tmpfs_dests:
            continue
        points[clean] = _point("volume", clean)
    return sorted(points.values(), key=lambda m: m["Destination"])


def new_volume_name() -> str:
    return secrets.token_hex(32)


def inspect_entries(points: list[dict], source: Callable[[dict], str]) -> list[dict]:
    """`.Mounts` of `docker inspect` (and `docker ps`), in dockerd's field order."""
    out = []
    for mp in points:
        entry: dict[str, Any] = {"Type": mp["Type"]}
        if mp["Type"] == "volume":
            entry["Name"] = mp["Name"]
        entry["Source"] = source(mp) if mp["Type"] != "tmpfs" else ""
        entry["Destination"] = mp["Destination"]
        if mp["Type"] == "volume":
            entry["Driver"] = mp["Driver"]
        entry.update(Mode=mp["Mode"], RW=mp["RW"], Propagation=mp["Propagation"])
        out.append(entry)
    return out


def matches(points: list[dict], values: list[str]) -> bool:
    """`docker ps --filter volume=X`: X is a volume name, a bind source or a destination."""
    keys = {mp["Name"] or mp["Source"] for mp in points} | {mp["Destination"] for mp in points}
    return any(v in keys for v in values)


def tmpfs_spec(dest: str, data: str) -> dict:
    """A runtime-spec tmpfs mount with dockerd's defaults (noexec,nosuid,nodev) merged with `data`."""
    merged: list[str] = []
    for word in [*DEFAULT_TMPFS_OPTIONS, *filter(None, (w.strip() for w in data.split(",")))]:
        key = word.split("=", 1)[0]
        opposite = _TMPFS_FLAG_PAIRS.get(word)
        merged = [w for w in merged if w != opposite and w.split("=", 1)[0] != key]
        merged.append(word)
    return {"type": "tmpfs", "destination": dest, "options": ",".join(merged)}


def tmpfs_specs(host_config: dict, points: list[dict]) -> list[dict]:
    out = [tmpfs_spec(_check_target(d, "tmpfs"), opts or "") for d, opts in (host_config.get("Tmpfs") or {}).items()]
    out += [tmpfs_spec(mp["Destination"], mp["TmpfsOptions"]) for mp in points if mp["Type"] == "tmpfs"]
    return out


def depth_order(specs: list[dict]) -> list[dict]:
    """Parents before children, as dockerd sorts mounts, so /a/b is not hidden by a later /a."""
    return sorted(specs, key=lambda s: len([p for p in s["destination"].split("/") if p]))
