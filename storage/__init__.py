"""Images and container filesystems: content store (blobs), layer store, rootfs drivers, archives.

Mechanisms only, all blocking: the daemon calls them off the event loop. Public modules:
archive (untrusted tars in and out), blobs (content store), layers (layer store), rootfs (per-
container filesystems: overlay2 and vfs drivers). The others are their parts.
"""
