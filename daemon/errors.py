"""Typed errors raised by the engine; the API layer maps each to its HTTP status."""


class DaemonError(Exception):
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidParameter(DaemonError):
    status = 400


class Forbidden(DaemonError):
    status = 403


class NotFound(DaemonError):
    status = 404


class Conflict(DaemonError):
    status = 409


class NotModified(DaemonError):
    """Answered as an empty 304: the CLI treats it as success (start of a running container...)."""

    status = 304

    def __init__(self, message: str = "") -> None:
        super().__init__(message)


class Unavailable(DaemonError):
    status = 503
