"""The Dockerfile parser's process: ``python3 -S -I <dir>/parsehelper.py <dir of the dockerfile
module>``, a JSON array of texts on stdin, a JSON array of results on stdout.

Why a process of its own: the parser (PyPI `dockerfile`) is BuildKit's Go parser behind cgo.
Loaded into the daemon, its Go runtime stays for good after the first build: 4 more threads,
~4 MiB of the library's pages and a Go heap that grew by ~6 MiB over a suite's worth of builds
and is given back only minutes later, if ever. Here it lives for one parse (~20 ms).

Each result is ``{"commands": [[field, ...], ...]}`` (the fields of `dockerfile.Command`, in
order, heredocs as lists) or ``{"error": str(GoParseError)}``. Runs by file path without the
package: standard library and `dockerfile` only.
"""

from __future__ import annotations

import json
import sys


def main() -> int:
    sys.path.insert(0, sys.argv[1])
    import dockerfile

    out = []
    for text in json.load(sys.stdin):
        try:
            cmds = dockerfile.parse_string(text)
        except dockerfile.GoParseError as e:
            out.append({"error": str(e)})
            continue
        out.append({"commands": [[c.cmd, c.sub_cmd, c.json, c.original, c.start_line, c.end_line,
                                  list(c.flags), list(c.value), [list(h) for h in c.heredocs]]
                                 for c in cmds]})
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
