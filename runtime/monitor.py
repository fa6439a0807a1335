"""Entry point of the per-container monitor: ``python3 -S -I <dir>/monitor.py <bundle_dir>``.

Run by file path, isolated and without site (an interpreter start with site costs ~100 ms
instead of ~17 ms). The code lives in runtime/shim.py so it is byte-compiled and cached;
this file only makes the ``runtime`` package importable, installed (site-packages) or from
the source tree alike: the directory above this one is appended to sys.path (appended, so
nothing there can shadow the standard library).
"""

import os
import sys


def _main() -> int:
    sys.path.append(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
    from runtime.shim import main

    return main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(_main())
