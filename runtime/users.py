"""Resolve Docker's ``--user`` value against the container's /etc/passwd and /etc/group.

Mirrors runc's ``user.GetExecUser`` plus dockerd's getUser: numeric ids need no entry,
names must exist, supplementary groups come from /etc/group only when no group was given,
and the primary group is always in the supplementary list. Runs inside the
container after pivot_root, so the files read are the image's own.
"""

from __future__ import annotations

_MAX_ID = 2**31 - 1


class UserError(Exception):
    pass


class Identity:
    __slots__ = ("uid", "gid", "groups", "home")

    def __init__(self, uid: int, gid: int, groups: list[int], home: str) -> None:
        self.uid = uid
        self.gid = gid
        self.groups = groups
        self.home = home

    def __repr__(self) -> str:
        return f"Identity(uid={self.uid}, gid={self.gid}, groups={self.groups}, home={self.home!r})"


def _entries(path: str, min_fields: int) -> list[list[str]]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except FileNotFoundError:
        return []
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(":")
        if len(fields) >= min_fields:
            rows.append(fields)
    return rows


def _int(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def resolve(user: str, passwd: str = "/etc/passwd", group: str = "/etc/group",
            extra_groups: list[str] | tuple[str, ...] = ()) -> Identity:
    """``extra_groups`` is ``--group-add``: appended to the user's supplementary groups."""
    user_arg, _, group_arg = user.partition(":")
    uid_arg = _int(user_arg)
    if uid_arg is not None and uid_arg > _MAX_ID:
        raise UserError(f"uids and gids must be in range 0-{_MAX_ID}")
    pw_name, uid, gid, home = "", 0, 0, "/"

    pw_rows = _entries(passwd, 7)
    if user_arg == "":
        uid_arg = 0
    match = next((r for r in pw_rows if (_int(r[2]) == uid_arg if uid_arg is not None
                                         else r[0] == user_arg)), None)
    if match is not None:
        pw_name, uid, gid, home = match[0], _int(match[2]) or 0, _int(match[3]) or 0, match[5] or "/"
    elif uid_arg is None:
        raise UserError(f"unable to find user {user_arg}: no matching entries in passwd file")
    else:
        uid = uid_arg

    groups: list[int] = []
    if group_arg or pw_name:
        gr_rows = _entries(group, 3)
        if group_arg:
            gid_arg = _int(group_arg)
            if gid_arg is not None and gid_arg > _MAX_ID:
                raise UserError(f"uids and gids must be in range 0-{_MAX_ID}")
            found = next((r for r in gr_rows if (_int(r[2]) == gid_arg if gid_arg is not None
                                                 else r[0] == group_arg)), None)
            if found is not None:
                gid = _int(found[2]) or 0
            elif gid_arg is None:
                raise UserError(f"unable to find group {group_arg}: no matching entries in group file")
            else:
                gid = gid_arg
        else:
            for r in gr_rows:
                members = r[3].split(",") if len(r) > 3 else []
                if pw_name in members and (g := _int(r[2])) is not None and g not in groups:
                    groups.append(g)
    if extra_groups:
        gr_rows = _entries(group, 3)
        for name in extra_groups:
            g = _int(name)
            if g is None:
                found = next((r for r in gr_rows if r[0] == name), None)
                if found is None or _int(found[2]) is None:
                    raise UserError(f"Unable to find group {name}: no matching entries in group file")
                g = _int(found[2])
            elif g > _MAX_ID:
                raise UserError(f"uids and gids must be in range 0-{_MAX_ID}")
            if g is not None and g not in groups:
                groups.append(g)
    # dockerd puts the primary group first in the supplementary list (AdditionalGids).
    return Identity(uid, gid, [gid] + [g for g in groups if g != gid], home)
