"""Entry point of an exec process: ``python3 -S -I <dir>/execproc.py <spec-json>``.

Run by file path for the same reason as monitor.py (fast, isolated start); the code lives
in runtime/nsexec.py.
"""

import os
import sys


def _main() -> int:
    sys.path.append(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
    from runtime.nsexec import main

    return main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(_main())
