"""Find the executable for ``args[0]`` and word exec failures as runc does.

The texts are what users see in ``docker run`` errors (runc uses Go's ``exec.LookPath``),
and the exit codes are the ones dockerd assigns: 127 when the file is not there, 126 when
it is there but cannot be executed.
"""

from __future__ import annotations

import errno
import os
import stat

NOT_FOUND = 127
CANNOT_EXECUTE = 126


class ExecError(Exception):
    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def _strerror(err: int) -> str:
    # Go's syscall error strings are lowercase.
    return os.strerror(err).lower()


def _check_file(path: str) -> int | None:
    """None when ``path`` is an executable file, else the errno Go's findExecutable reports."""
    try:
        st = os.stat(path)
    except OSError as e:
        return e.errno
    if stat.S_ISDIR(st.st_mode) or not st.st_mode & 0o111:
        return errno.EACCES
    return None


def find(name: str, path_env: str) -> str:
    if "/" in name:
        err = _check_file(name)
        if err is None:
            return name
        if err == errno.EACCES:
            raise ExecError(f'exec: "{name}": {_strerror(err)}', CANNOT_EXECUTE)
        code = NOT_FOUND if err in (errno.ENOENT, errno.ENOTDIR) else CANNOT_EXECUTE
        raise ExecError(f'exec: "{name}": stat {name}: {_strerror(err)}', code)
    for directory in path_env.split(":"):
        candidate = os.path.join(directory or ".", name)
        if _check_file(candidate) is None:
            return candidate
    raise ExecError(f'exec: "{name}": executable file not found in $PATH', NOT_FOUND)


def execve_error(path: str, err: OSError) -> ExecError:
    """The error for an execve(2) that failed after :func:`find` accepted the file."""
    code = NOT_FOUND if err.errno == errno.ENOENT else CANNOT_EXECUTE
    return ExecError(f"exec {path}: {_strerror(err.errno or errno.EIO)}", code)
