"""Volumes and a container's mounts (binds, volumes, tmpfs)."""
