"""Registries: push, pull (tag, digest, -a, index with two platforms), run of a missing image,
login with basic auth, and registries that misbehave (bad bytes, hangs, odd manifests)."""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from storage.registry import Credentials, RegistryClient
from tests.e2e.helpers import image_inspect, tar_bytes, wait_for
from tests.e2e.registry_fixture import FakeRegistry, docker_registry, sha
from tests.helpers import Daemon, tmp_base

pytestmark = pytest.mark.e2e
DIGEST = re.compile(r"digest: (sha256:[0-9a-f]{64}) size: \d+")


@pytest.fixture(scope="module")
def registry() -> Iterator[str]:
    with docker_registry(tmp_base() / "registry-open") as addr:
        yield addr


@pytest.fixture(scope="module")
def auth_registry() -> Iterator[str]:
    with docker_registry(tmp_base() / "registry-auth", htpasswd=("alice", "s3cret")) as addr:
        yield addr


@pytest.fixture
def fake() -> Iterator[FakeRegistry]:
    f = FakeRegistry()
    yield f
    f.close()


def _layer(files: dict[str, bytes]) -> tuple[bytes, str]:
    """(gzip blob, diff id) of a tar with `files`."""
    raw = tar_bytes(files)
    return gzip.compress(raw, mtime=0), sha(raw)


def _images(d: Daemon) -> set[str]:
    return {i["Id"] for i in d.api("GET", "/images/json").json()}


def _commit_layers(d: Daemon, uname: Callable[[str], str], n: int) -> str:
    """An image of busybox + n committed layers; returns its name."""
    base = "busybox:latest"
    name = uname("ml")
    for i in range(n):
        c = f"{name}-c{i}"
        d.docker("run", "--name", c, base, "sh", "-c", f"echo layer{i} > /f{i}; rm -f /etc/group")
        base = f"{name}:l{i}"
        d.docker("commit", c, base)
        d.docker("rm", c)
    return base


def test_push_pull_by_tag_and_digest(d: Daemon, registry: str, uname: Callable[[str], str]) -> None:
    src = _commit_layers(d, uname, 2)
    repo = f"{registry}/t/{uname('img')}"
    d.docker("tag", src, f"{repo}:v1")
    out = d.docker("push", f"{repo}:v1").stdout
    assert f"The push refers to repository [{repo}]" in out
    assert out.count("Pushed") + out.count("Layer already exists") + out.count("Mounted from") == 3, out
    digest = DIGEST.search(out).group(1)  # type: ignore[union-attr]
    local_id = image_inspect(d, src)["Id"]
    # The same content pushed again: every layer is already there.
    again = d.docker("push", f"{repo}:v1").stdout
    assert again.count("Layer already exists") == 3, again
    d.docker("rmi", f"{repo}:v1", src, f"{src.rsplit(':', 1)[0]}:l0")
    assert local_id not in _images(d)

    out = d.docker("pull", f"{repo}:v1").stdout
    assert "v1: Pulling from t/" in out and "Pull complete" in out and f"Digest: {digest}" in out, out
    assert "Already exists" in out  # busybox's layer was never removed
    info = image_inspect(d, f"{repo}:v1")
    assert info["Id"] == local_id  # the same config bytes: the same image everywhere
    assert info["RepoDigests"] == [f"{repo}@{digest}"]
    assert len(info["RootFS"]["Layers"]) == 3
    assert "Image is up to date" in d.docker("pull", f"{repo}:v1").stdout
    # rmi of the digest reference only drops that name while a tag remains
    assert d.docker("rmi", f"{repo}@{digest}").stdout.strip() == f"Untagged: {repo}@{digest}"
    assert image_inspect(d, f"{repo}:v1")["RepoDigests"] == []
    d.docker("rmi", f"{repo}:v1")
    # the last tag of a repository takes that repository's digest references along (as dockerd);
    # the image stays under its other name
    d.docker("pull", f"{repo}:v1")
    d.docker("tag", f"{repo}:v1", f"{repo}-keep:v1")
    out = d.docker("rmi", f"{repo}:v1").stdout.split("\n")
    assert out[:2] == [f"Untagged: {repo}:v1", f"Untagged: {repo}@{digest}"], out
    assert image_inspect(d, f"{repo}-keep:v1")["RepoDigests"] == []
    assert repo not in d.docker("images", "--format", "{{.Repository}}").stdout.split()
    d.docker("rmi", f"{repo}-keep:v1")

    out = d.docker("pull", f"{repo}@{digest}").stdout
    assert f"Status: Downloaded newer image for {repo}@{digest}" in out, out
    r = d.docker("run", "--rm", f"{repo}@{digest}", "cat", "/f0", "/f1")
    assert r.stdout == "layer0\nlayer1\n"
    assert d.docker("run", "--rm", f"{repo}@{digest}", "ls", "/etc/group", check=False).returncode != 0
    d.docker("rmi", f"{repo}@{digest}")


def test_cross_repo_mount_and_all_tags(d: Daemon, registry: str, uname: Callable[[str], str]) -> None:
    a, b = f"{registry}/m/{uname('a')}", f"{registry}/m/{uname('b')}"
    own = _commit_layers(d, uname, 1)  # not busybox: a push gives the image RepoDigests
    d.docker("tag", own, f"{a}:x")
    d.docker("tag", own, f"{a}:y")
    d.docker("push", "-a", a)
    d.docker("tag", own, f"{b}:x")
    out = d.docker("push", f"{b}:x").stdout
    assert "Mounted from " in out, out  # from whichever repository of this registry has it
    d.docker("rmi", f"{a}:x", f"{a}:y", f"{b}:x")
    out = d.docker("pull", "-a", a).stdout
    tags = {t for t in d.docker("images", "--format", "{{.Tag}}", a).stdout.split()}
    assert tags == {"x", "y"}, out
    d.docker("rmi", f"{a}:x", f"{a}:y")


def test_pull_progress_stream(d: Daemon, registry: str, uname: Callable[[str], str]) -> None:
    src = _commit_layers(d, uname, 1)
    repo = f"{registry}/p/{uname('img')}"
    d.docker("tag", src, f"{repo}:latest")
    d.docker("push", f"{repo}:latest")
    d.docker("rmi", f"{repo}:latest", src)
    r = d.api("POST", f"/v1.41/images/create?fromImage={repo}&tag=latest", headers={"X-Registry-Auth": "e30="},
              timeout=60)
    assert r.status == 200 and r.headers["Content-Type"] == "application/json"
    recs = [json.loads(line) for line in r.text.splitlines()]
    statuses = [x.get("status", "") for x in recs]
    assert recs[0] == {"status": f"Pulling from p/{uname('img')}", "id": "latest"}
    assert "Already exists" in statuses and "Pulling fs layer" in statuses
    for s in ("Downloading", "Verifying Checksum", "Download complete", "Extracting", "Pull complete"):
        assert s in statuses, statuses
    dl = next(x for x in recs if x.get("status") == "Downloading")
    assert set(dl["progressDetail"]) == {"current", "total"} and dl["progress"].startswith("[")
    assert statuses[-1] == f"Status: Downloaded newer image for {repo}:latest"
    d.docker("rmi", f"{repo}:latest")


def test_run_pulls_missing_image(d: Daemon, registry: str, uname: Callable[[str], str]) -> None:
    repo = f"{registry}/r/{uname('bb')}"
    d.docker("tag", _commit_layers(d, uname, 1), repo)
    d.docker("push", repo)
    d.docker("rmi", repo)
    r = d.docker("run", "--rm", repo, "echo", "pulled-and-ran")
    assert "Unable to find image" in r.stderr and r.stdout.endswith("pulled-and-ran\n")
    r = d.docker("run", "--rm", f"{registry}/r/{uname('nonexistent')}", "true", check=False)
    assert r.returncode == 125 and "Error response from daemon" in r.stderr
    d.docker("rmi", repo)


def test_pull_errors_leave_nothing(d: Daemon, registry: str, uname: Callable[[str], str]) -> None:
    own = _commit_layers(d, uname, 1)
    before = _images(d)
    r = d.docker("pull", f"{registry}/e/{uname('nothing')}:latest", check=False)
    assert r.returncode == 1 and "unknown" in r.stderr, r.stderr
    d.docker("tag", own, f"{registry}/e/{uname('bb')}:t")
    d.docker("push", f"{registry}/e/{uname('bb')}:t")
    d.docker("rmi", f"{registry}/e/{uname('bb')}:t")
    r = d.docker("pull", f"{registry}/e/{uname('bb')}:nosuchtag", check=False)
    assert r.returncode == 1 and "manifest unknown" in r.stderr
    for bad in ("bogus", "linux/bogus", "bogus/amd64"):
        r = d.docker("pull", "--platform", bad, f"{registry}/e/{uname('bb')}:t", check=False)
        assert r.returncode == 1 and "unknown operating system or architecture" in r.stderr, r.stderr
    zero = "sha256:" + "0" * 64
    r = d.docker("pull", f"{registry}/e/{uname('bb')}@{zero}", check=False)
    assert r.returncode == 1 and "manifest unknown" in r.stderr
    r = d.api("POST", "/images/create?fromImage=127.0.0.1:1/x/y&tag=latest")
    assert r.status >= 400 and "connection refused" in r.message(), r.text
    assert _images(d) == before


def test_basic_auth_login_push_pull(d: Daemon, auth_registry: str, uname: Callable[[str], str]) -> None:
    repo = f"{auth_registry}/a/{uname('bb')}"
    d.docker("tag", _commit_layers(d, uname, 1), repo)
    r = d.docker("push", repo, check=False)
    assert r.returncode != 0 and "authentication required" in r.stderr + r.stdout, r
    r = d.docker("login", "-u", "alice", "--password-stdin", auth_registry, input="wrong\n", check=False)
    assert r.returncode != 0 and "401" in r.stderr + r.stdout
    r = d.docker("login", "-u", "alice", "--password-stdin", auth_registry, input="s3cret\n")
    assert "Login Succeeded" in r.stdout
    try:
        d.docker("push", repo)
        d.docker("rmi", repo)
        d.docker("pull", repo)
        assert image_inspect(d, repo)["RepoDigests"]
    finally:
        d.docker("logout", auth_registry)
    d.docker("rmi", repo)
    r = d.docker("pull", repo, check=False)
    assert r.returncode != 0 and "authentication required" in r.stderr


def _push_index(registry: str, repo: str) -> bytes:
    """An OCI index of an amd64 and an arm64 image pushed by hand as repo:multi; returns it."""
    client = RegistryClient(registry, Credentials())
    try:
        manifests = []
        for arch, text in (("amd64", b"amd64\n"), ("arm64", b"arm64\n")):
            blob, diff_id = _layer({"arch": text})
            config = json.dumps({"architecture": arch, "os": "linux", "config": {"Cmd": ["sh"]},
                                 "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
            for data in (blob, config):
                if not client.blob_exists(repo, sha(data)):
                    client.upload_blob(repo, sha(data), io.BytesIO(data), len(data))
            m = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                       "digest": sha(config), "size": len(config)},
                            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                        "digest": sha(blob), "size": len(blob)}]}).encode()
            client.put_manifest(repo, sha(m), m, "application/vnd.oci.image.manifest.v1+json")
            manifests.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha(m),
                              "size": len(m), "platform": {"os": "linux", "architecture": arch}})
        index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                            "manifests": manifests}).encode()
        client.put_manifest(repo, "multi", index, "application/vnd.oci.image.index.v1+json")
    finally:
        client.close()
    return index


def test_index_with_two_platforms(d: Daemon, registry: str, uname: Callable[[str], str]) -> None:
    """An OCI index pushed by hand: the host's platform by default, another with --platform."""
    repo = f"m/{uname('multi')}"
    index = _push_index(registry, repo)
    name = f"{registry}/{repo}:multi"
    host_arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, "")
    other = "arm64" if host_arch == "amd64" else "amd64"
    out = d.docker("pull", name).stdout
    assert f"Digest: {sha(index)}" in out, out
    if host_arch:
        assert image_inspect(d, name)["Architecture"] == host_arch
    d.docker("rmi", name)
    d.docker("pull", "--platform", f"linux/{other}", name)
    info = image_inspect(d, name)
    assert info["Architecture"] == other and info["RepoDigests"] == [f"{registry}/{repo}@{sha(index)}"]
    d.docker("rmi", name)
    r = d.docker("pull", "--platform", "linux/s390x", name, check=False)
    assert r.returncode != 0 and "no matching manifest" in r.stderr


def _config(diff_ids: list[str]) -> dict:
    return {"architecture": "amd64", "os": "linux", "config": {}, "rootfs": {"type": "layers", "diff_ids": diff_ids}}


def _layer_dirs(d: Daemon) -> set[str]:
    return {n for n in os.listdir(d.data_root / "layers") if not n.startswith(".")}


def test_bad_registries(d: Daemon, fake: FakeRegistry, new_daemon: Callable[..., Daemon]) -> None:
    good, diff_id = _layer({"ok": b"ok"})
    # Each case its own layer: the fake serves one body per digest.
    l1, d1 = _layer({"one": b"1"})
    l2, _ = _layer({"two": b"2"})
    l3, d3 = _layer({"three": b"3" * 1000})
    bad, bad_diff = _layer({"bad": b"bad"})
    fake.add_image("x/wrongbytes", "latest", _config([d1]), [l1], served={sha(l1): good})
    fake.add_image("x/wrongdiff", "latest", _config([diff_id]), [l2])
    fake.add_image("x/corrupt", "latest", _config([d3]), [l3], served={sha(l3): l3[:20] + b"\0" * 30 + l3[50:]})
    fake.manifests["x/odd:latest"] = ("application/vnd.example.unknown+json",
                                      b'{"schemaVersion":2,"mediaType":"application/vnd.example.unknown+json"}')
    before_images, before_layers = _images(d), _layer_dirs(d)
    cases = {"wrongbytes": "verification failed", "wrongdiff": "diff id mismatch", "corrupt": "",
             "odd": "unsupported manifest media type"}
    for repo, msg in cases.items():
        r = d.docker("pull", f"{fake.addr}/x/{repo}", check=False, timeout=60)
        assert r.returncode == 1, (repo, r)
        assert msg in r.stderr + r.stdout, (repo, r.stderr)
    assert _images(d) == before_images and _layer_dirs(d) == before_layers
    # A registry that stops sending: bounded by the read timeout (short here).
    os.environ["PYDOCKERD_REGISTRY_READ_TIMEOUT"] = "2"
    try:
        quick = new_daemon()
    finally:
        del os.environ["PYDOCKERD_REGISTRY_READ_TIMEOUT"]
    fake.add_image("x/hang", "latest", _config([bad_diff]), [bad])
    fake.hang.add(sha(bad))
    r = quick.docker("pull", f"{fake.addr}/x/hang", check=False, timeout=40)
    assert r.returncode == 1 and "timed out" in r.stderr + r.stdout, r
    assert not _images(quick)
    blobs = quick.data_root / "blobs" / "sha256"
    assert not os.listdir(blobs)
    # A client that goes away mid-download: the download stops, nothing stays (temporaries included).
    p = subprocess.Popen(["docker", "pull", f"{fake.addr}/x/hang"], env=quick.env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    wait_for(lambda: os.listdir(blobs), timeout=10, what="a download in progress")
    p.kill()
    p.wait()
    wait_for(lambda: not os.listdir(blobs), timeout=15, what="the interrupted download to be cleaned up")
    assert not _images(quick) and not _layer_dirs(quick)


def test_push_unknown_image(d: Daemon, registry: str) -> None:
    r = d.docker("push", f"{registry}/nope/none:latest", check=False)
    assert r.returncode != 0 and "does not exist locally" in r.stderr + r.stdout


def test_bearer_token_auth(d: Daemon) -> None:
    """Docker Hub's scheme: a 401 names a token realm; the token comes with the login's credentials."""
    fake = FakeRegistry(bearer=("bob", "hunter2"))
    try:
        blob, diff_id = _layer({"tok": b"token\n"})
        fake.add_image("t/private", "latest", _config([diff_id]), [blob])
        r = d.docker("pull", f"{fake.addr}/t/private", check=False)
        assert r.returncode == 1 and "incorrect username or password" in r.stderr, r
        r = d.docker("login", "-u", "bob", "--password-stdin", fake.addr, input="nope\n", check=False)
        assert r.returncode != 0
        d.docker("login", "-u", "bob", "--password-stdin", fake.addr, input="hunter2\n")
        try:
            d.docker("pull", f"{fake.addr}/t/private")
        finally:
            d.docker("logout", fake.addr)
        d.docker("rmi", f"{fake.addr}/t/private")
    finally:
        fake.close()


def _non_loopback_ipv4() -> str | None:
    import subprocess as sp

    out = sp.run(["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        addr = line.split()[3].split("/")[0]
        if not addr.startswith(("127.", "10.", "172.")):  # not a bridge of some daemon
            return addr
    return None


def test_insecure_registry_flag(d: Daemon, new_daemon: Callable[..., Daemon], uname: Callable[[str], str]) -> None:
    """Plain HTTP only for loopback unless the daemon lists the registry with --insecure-registry."""
    host = _non_loopback_ipv4()
    if host is None:
        pytest.skip("no non-loopback IPv4 address on this host")
    with docker_registry(tmp_base() / "registry-insecure", host=host) as addr:
        repo = f"{addr}/i/{uname('bb')}"
        d.docker("tag", _commit_layers(d, uname, 1), repo)
        r = d.docker("push", repo, check=False)
        assert r.returncode != 0 and "https" in r.stderr.lower(), r.stderr
        extra = new_daemon(extra_args=["--insecure-registry", addr])
        out = extra.docker("pull", repo, check=False)
        assert out.returncode == 1 and "manifest unknown" in out.stderr, out  # reached over plain HTTP


def test_zstd_layer_pull_save_push(d: Daemon, registry: str, uname: Callable[[str], str], tmp_path: Path) -> None:
    import zstandard

    repo = f"z/{uname('zstd')}"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo("zfile")
        ti.size = 5
        tf.addfile(ti, io.BytesIO(b"zstd\n"))
    raw = buf.getvalue()
    blob = zstandard.ZstdCompressor().compress(raw)
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [sha(raw)]}}).encode()
    client = RegistryClient(registry, Credentials())
    try:
        for data in (blob, config):
            client.upload_blob(repo, sha(data), io.BytesIO(data), len(data))
        m = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(config),
                                   "size": len(config)},
                        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+zstd",
                                    "digest": sha(blob), "size": len(blob)}]}).encode()
        client.put_manifest(repo, "v1", m, "application/vnd.oci.image.manifest.v1+json")
    finally:
        client.close()
    name = f"{registry}/{repo}:v1"
    d.docker("pull", name)
    assert image_inspect(d, name)["Id"] == sha(config)
    out = tmp_path / "z.tar"
    d.docker("save", "-o", out, name)
    with tarfile.open(out) as tf:
        man = json.load(tf.extractfile("manifest.json"))  # type: ignore[arg-type]
        layer = tf.extractfile(man[0]["Layers"][0]).read()  # type: ignore[union-attr]
    assert sha(layer) == sha(raw)
    other = f"{registry}/z/{uname('again')}:v1"
    d.docker("tag", name, other)
    pushed = d.docker("push", other).stdout
    assert "Mounted from" in pushed or "Layer already exists" in pushed, pushed
    d.docker("rmi", name, other)


def test_distribution_inspect(d: Daemon, registry: str, uname: Callable[[str], str]) -> None:
    """GET /distribution/{name}/json: the manifest's descriptor and its platforms, read from the
    registry without pulling; for an index, its entries' platforms."""
    repo = f"{registry}/di/{uname('bb')}"
    d.docker("tag", "busybox:latest", f"{repo}:v1")
    push = d.docker("push", f"{repo}:v1").stdout
    digest = DIGEST.search(push).group(1)  # type: ignore[union-attr]
    d.docker("rmi", f"{repo}:v1")
    images_before = d.api("GET", "/images/json").json()
    for ref in (f"{repo}:v1", f"{repo}@{digest}"):
        r = d.api("GET", f"/distribution/{ref}/json")
        assert r.status == 200, r.text
        info = r.json()
        assert info["Descriptor"]["digest"] == digest
        assert info["Descriptor"]["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
        assert info["Descriptor"]["size"] > 0
        assert info["Platforms"] == [{"architecture": image_inspect(d, "busybox")["Architecture"], "os": "linux"}]
    assert d.api("GET", "/images/json").json() == images_before  # nothing pulled
    # docker-py's inspect_distribution
    assert d.client.api.inspect_distribution(f"{repo}:v1")["Descriptor"]["digest"] == digest
    assert d.api("GET", f"/distribution/{repo}:nosuchtag/json").status == 404
    assert d.api("GET", "/distribution/BadName/json").status == 400
    # An index: one platform per entry.
    name = f"{registry}/m/{uname('multi')}"
    _push_index(registry, f"m/{uname('multi')}")
    info = d.api("GET", f"/distribution/{name}:multi/json").json()
    assert info["Descriptor"]["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert info["Platforms"] == [{"architecture": "amd64", "os": "linux"}, {"architecture": "arm64", "os": "linux"}]


def test_search_lists_the_registry_catalog(d: Daemon, registry: str, uname: Callable[[str], str]) -> None:
    tag = uname("srch")
    for repo in (f"{registry}/s/{tag}-one", f"{registry}/s/{tag}-two"):
        d.docker("tag", "busybox:latest", repo)
        d.docker("push", repo)
        d.docker("rmi", repo)
    out = d.docker("search", "--format", "{{.Name}}", f"{registry}/{tag}").stdout.split()
    assert out == [f"{registry}/s/{tag}-one", f"{registry}/s/{tag}-two"]
    r = d.api("GET", f"/images/search?term={registry}/{tag}-two&limit=5")
    assert r.status == 200 and r.json() == [{"name": f"{registry}/s/{tag}-two", "description": "", "star_count": 0,
                                             "is_official": False, "is_automated": False}]
    assert d.api("GET", f"/images/search?term={registry}/{tag}&limit=1").json()[0]["name"].endswith("-one")
    assert d.api("GET", f"/images/search?term={registry}/{tag}&filters=" + '{"is-official":["true"]}').json() == []
    assert d.api("GET", f"/images/search?term={registry}/{tag}&limit=0").status == 400
    assert d.api("GET", f"/images/search?term={registry}/x&filters=" + '{"nope":["1"]}').status == 400
    assert d.api("GET", "/images/search").status == 400
