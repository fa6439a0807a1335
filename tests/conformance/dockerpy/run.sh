#!/usr/bin/env bash
# Run docker-py's own integration tests against $DOCKER_HOST.
#
# The docker-py source is downloaded from PyPI at run time into a temp dir and
# never committed.  docker 7.x sdists (7.0.0 .. 7.2.0) ship NO tests/ folder,
# so we use the newest sdist that still carries tests/integration: 6.1.3
# (default API version 1.41).
#
# Excluded up front (written to $OUT/deselected.txt with the reason):
#   * whole files needing swarm mode / plugins (they would switch a shared
#     engine into swarm or install plugins from Docker Hub);
#   * tests that pull from Docker Hub (no internet here, and no traffic may
#     leave the machine);
#   * prune tests (unfiltered prune deletes other users' objects on a shared engine).
#
# Output (in $OUT, default /tmp/dockerpy-conformance):
#   junit.xml, passed.txt (node ids that passed), failed.txt, summary line.
# Usage: DOCKER_HOST=unix:///path.sock ./run.sh [extra pytest args]
#   DOCKERPY_TESTS="id id ..." runs only those test ids (default: all of tests/integration).
# tests/conformance/dockerpy/check.py drives this against a daemon of its own.
set -euo pipefail
: "${DOCKER_HOST:?set DOCKER_HOST}"
HERE="$(cd "$(dirname "$0")" && pwd)"
VER="${DOCKERPY_VERSION:-6.1.3}"
OUT="${OUT:-/tmp/dockerpy-conformance}"
VENV="${DOCKERPY_VENV:-/tmp/dockerpy-conformance-venv}"
PER_TEST_TIMEOUT="${PER_TEST_TIMEOUT:-90}"
WORK="$(mktemp -d /tmp/dockerpy-src.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT"; rm -f "$OUT"/*.txt "$OUT"/junit.xml

# The venv first: its pip downloads the sdist too (a fresh Debian has no pip for python3).
if ! "$VENV/bin/python" -c "import pytest, pytest_timeout, paramiko, requests, websocket" 2>/dev/null; then
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  # requests>=2.32 breaks docker-py<7.1 ("Not supported URL scheme http+docker")
  "$VENV/bin/pip" install -q "requests==2.31.0" "urllib3<2" "websocket-client" "packaging" \
      "pytest==7.4.4" "pytest-timeout==2.2.0" "paramiko"
fi

cd "$WORK"
"$VENV/bin/python" -m pip download -q --no-binary :all: --no-deps "docker==$VER" -d . >/dev/null
tar xzf "docker-$VER.tar.gz"
SRC="$WORK/docker-$VER"
if [ ! -d "$SRC/tests/integration" ]; then
  echo "docker==$VER sdist has no tests/integration; set DOCKERPY_VERSION=6.1.3" >&2; exit 2
fi

# Images the tests expect, made from our busybox (no pulls from the internet).
BB="${DOCKERPY_BUSYBOX_IMAGE:-busybox:latest}"
docker image inspect "$BB" >/dev/null
CREATED_TAGS=()
for t in alpine:3.10 alpine:latest; do
  if ! docker image inspect "$t" >/dev/null 2>&1; then docker tag "$BB" "$t"; CREATED_TAGS+=("$t"); fi
done

# Build the deselect list from the test sources.
"$VENV/bin/python" - "$SRC" "$OUT/deselected.txt" <<'EOF'
import ast, sys, os
src, dest = sys.argv[1], sys.argv[2]
skip_files = {"api_swarm_test.py": "swarm", "models_swarm_test.py": "swarm",
              "api_service_test.py": "swarm", "models_services_test.py": "swarm",
              "models_nodes_test.py": "swarm", "api_secret_test.py": "swarm",
              "api_config_test.py": "swarm", "api_plugin_test.py": "plugins from Docker Hub"}
needles = {"init_swarm": "swarm", ".pull(": "pulls from Docker Hub", "images.pull": "pulls from Docker Hub",
           "hello-world": "pulls from Docker Hub", "prune_": "unfiltered prune on a shared engine",
           "pull=True": "pulls from Docker Hub",
           "does_not_exist": "implicit pull of a missing image from Docker Hub",
           "inspect_distribution": "queries Docker Hub"}
lines = []
d = os.path.join(src, "tests", "integration")
for fn in sorted(os.listdir(d)):
    if not fn.endswith("_test.py"):
        continue
    rel = f"tests/integration/{fn}"
    if fn in skip_files:
        lines.append(f"{rel}\t{skip_files[fn]}")
        continue
    text = open(os.path.join(d, fn)).read()
    tree = ast.parse(text)
    for cls in [n for n in tree.body if isinstance(n, ast.ClassDef)] + [None]:
        body = cls.body if cls else tree.body
        for f in body:
            if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) and f.name.startswith("test"):
                seg = ast.get_source_segment(text, f) or ""
                why = next((r for k, r in needles.items() if k in seg), None)
                if why:
                    nid = f"{rel}::{cls.name}::{f.name}" if cls else f"{rel}::{f.name}"
                    lines.append(f"{nid}\t{why}")
open(dest, "w").write("\n".join(lines) + "\n")
EOF

ARGS=()
while IFS=$'\t' read -r nid why; do
  [ -z "$nid" ] && continue
  case "$nid" in *::*) ARGS+=(--deselect "$nid");; *) ARGS+=(--ignore "$nid");; esac
done < "$OUT/deselected.txt"

cd "$SRC"
set +e
read -r -a SELECTION <<< "${DOCKERPY_TESTS:-tests/integration}"
timeout 3000 "$VENV/bin/python" -m pytest "${SELECTION[@]}" -p no:cacheprovider -q \
  --timeout="$PER_TEST_TIMEOUT" --junitxml="$OUT/junit.xml" -o junit_family=xunit2 \
  "${ARGS[@]}" "$@" > "$OUT/pytest.log" 2>&1
RC=$?
set -e
# docker-py's own pytest summary stays in pytest.log: CI reads "N passed, N failed" lines as a
# verdict, and the verdict here is check.py's (or passed.txt against the baseline).
# docker-py's tests leave a few images behind; remove those (names are docker-py's own)
docker images --format '{{.Repository}}:{{.Tag}}' | grep -E '^(dockerpytest|docker-py-test)' \
  | xargs -r docker rmi -f >/dev/null 2>&1 || true
for t in "${CREATED_TAGS[@]}"; do docker rmi "$t" >/dev/null 2>&1 || true; done

"$VENV/bin/python" - "$OUT" <<'EOF'
import sys, xml.etree.ElementTree as ET
out = sys.argv[1]
root = ET.parse(f"{out}/junit.xml").getroot()
passed, failed, skipped = [], [], []
for tc in root.iter("testcase"):
    # classname like tests.integration.api_container_test.CreateContainerTest
    # or tests.integration.credentials.store_test.TestStore
    parts = tc.get("classname", "").split(".")
    k = next((i + 1 for i, p in enumerate(parts) if p.endswith("_test")), len(parts))
    mod = "/".join(parts[:k]) + ".py"
    nid = "::".join([mod] + parts[k:] + [tc.get("name")])
    kids = {c.tag for c in tc}
    if kids & {"failure", "error"}:
        failed.append(nid)
    elif "skipped" in kids:
        skipped.append(nid)
    else:
        passed.append(nid)
for name, l in (("passed", passed), ("failed", failed), ("skipped", skipped)):
    open(f"{out}/{name}.txt", "w").write("".join(x + "\n" for x in sorted(l)))
print(f"dockerpy run: passed={len(passed)} failed={len(failed)} skipped={len(skipped)} (details in {out})")
EOF
exit 0
