"""Errors shared across the storage package."""


class ArchiveError(ValueError):
    """An archive or compressed stream that is invalid or hostile; the API answers it with a 400."""


class DriverUnavailable(RuntimeError):
    """A rootfs driver that cannot work on this host (the message says why)."""
