"""Version strings reported by /version and docker info."""

VERSION = "0.1.0"
GIT_COMMIT = "pydockerd"
