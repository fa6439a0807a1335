"""Images and container filesystems: content store (blobs), layer store, rootfs drivers, archives.

Mechanisms only, all blocking: the daemon calls them off the event loop.
"""
