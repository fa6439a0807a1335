"""docker-py 7 (the current major; its sdists ship no tests, so the conformance check runs 6.1.3's)
through its high-level models, as applications use it: containers, exec, archives, logs and
attach, events, volumes, networks, images, save/load, system."""

from __future__ import annotations

import io
import tarfile
import time
from collections.abc import Callable, Iterator

import docker
import pytest

from tests.helpers import Daemon


@pytest.fixture
def client(d: Daemon) -> Iterator[docker.DockerClient]:
    assert tuple(int(x) for x in docker.__version__.split(".")[:2]) >= (7, 0), docker.__version__
    c = docker.DockerClient(base_url=d.host, version="auto", timeout=60)
    try:
        yield c
    finally:
        c.close()


def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def test_containers_run_and_lifecycle(client: docker.DockerClient, uname: Callable[[str], str]) -> None:
    assert client.ping() is True
    assert client.version()["ApiVersion"] == "1.50"
    assert client.containers.run("busybox", ["sh", "-c", "echo hi; echo err >&2"], remove=True,
                                 stderr=True) == b"hi\nerr\n"
    with pytest.raises(docker.errors.ContainerError) as e:
        client.containers.run("busybox", ["sh", "-c", "echo bad >&2; exit 3"], remove=True)
    assert e.value.exit_status == 3 and b"bad" in e.value.stderr
    c = client.containers.run("busybox", "sleep 300", detach=True, name=uname("m"), labels={"sdk": uname("l")},
                              environment={"A": "1"})
    c.reload()
    assert c.status == "running" and c.name == uname("m") and c.labels == {"sdk": uname("l")}
    assert [x.id for x in client.containers.list(filters={"label": f"sdk={uname('l')}"})] == [c.id]
    assert client.containers.get(uname("m")).id == c.id
    c.pause()
    c.reload()
    assert c.status == "paused"
    c.unpause()
    assert any("sleep" in " ".join(p) for p in c.top()["Processes"])
    c.rename(uname("renamed"))
    c.reload()
    assert c.name == uname("renamed")
    c.stop(timeout=1)
    c.reload()
    assert c.status == "exited"
    c.start()
    c.kill()
    c.reload()
    assert c.status == "exited" and c.attrs["State"]["ExitCode"] == 137
    c.remove()
    with pytest.raises(docker.errors.NotFound):
        client.containers.get(c.id)
    pruned = client.containers.prune(filters={"label": f"sdk={uname('none')}"})
    assert pruned["ContainersDeleted"] is None or pruned["ContainersDeleted"] == []


def test_exec_archives_logs_attach(client: docker.DockerClient, uname: Callable[[str], str]) -> None:
    c = client.containers.run("busybox", ["sh", "-c", "echo started; sleep 300"], detach=True,
                              name=uname("x"), environment={"A": "1"})
    try:
        assert c.exec_run("sh -c 'echo $A; exit 3'") == (3, b"1\n")
        code, (out, err) = c.exec_run(["sh", "-c", "echo o; echo e >&2"], demux=True)
        assert (code, out, err) == (0, b"o\n", b"e\n")
        res = c.exec_run(["sh", "-c", "for i in 1 2 3; do echo $i; done"], stream=True)
        assert b"".join(res.output) == b"1\n2\n3\n"
        for _ in range(10):  # output written at once was lost when it came glued to the 101
            assert c.exec_run("echo tty", tty=True).output == b"tty\r\n"
        c.put_archive("/tmp", _tar({"f.txt": b"data"}))
        bits, stat = c.get_archive("/tmp/f.txt")
        assert stat["name"] == "f.txt" and stat["size"] == 4
        with tarfile.open(fileobj=io.BytesIO(b"".join(bits))) as tf:
            assert tf.extractfile("f.txt").read() == b"data"  # type: ignore[union-attr]
        assert {"Path": "/tmp/f.txt", "Kind": 1} in c.diff()
        deadline = time.monotonic() + 15
        while c.logs() != b"started\n" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert c.logs(timestamps=False, tail=1) == b"started\n"
        stats = c.stats(stream=False)
        assert "memory_stats" in stats and "cpu_stats" in stats
        export = b"".join(c.export())
        with tarfile.open(fileobj=io.BytesIO(export)) as tf:
            assert "tmp/f.txt" in tf.getnames()
    finally:
        c.remove(force=True)
    # attach with logs and stream to a container that prints and exits
    a = client.containers.create("busybox", ["sh", "-c", "sleep 0.3; echo attached"], name=uname("a"))
    try:
        stream = a.attach(stream=True, logs=True)
        a.start()
        assert b"".join(stream) == b"attached\n"
        assert a.wait(timeout=30)["StatusCode"] == 0
    finally:
        a.remove(force=True)


def test_events_volumes_networks(client: docker.DockerClient, uname: Callable[[str], str]) -> None:
    since = int(time.time()) - 1
    vol = client.volumes.create(uname("v"), labels={"k": "v"})
    assert client.volumes.get(vol.name).attrs["Labels"] == {"k": "v"}
    net = client.networks.create(uname("n"), labels={"k": "v"})
    c = client.containers.run("busybox", "sleep 300", detach=True, name=uname("c"),
                              volumes={vol.name: {"bind": "/data", "mode": "rw"}})
    try:
        net.connect(c, aliases=["alias1"])
        net.reload()
        assert [x.id for x in net.containers] == [c.id]
        c.reload()
        assert "alias1" in c.attrs["NetworkSettings"]["Networks"][net.name]["Aliases"]
        net.disconnect(c)
        c.exec_run("sh -c 'echo persisted > /data/f'")
    finally:
        c.remove(force=True)
    out = client.containers.run("busybox", "cat /data/f", remove=True, volumes=[f"{vol.name}:/data"])
    assert out == b"persisted\n"
    net.remove()
    vol.remove()
    until = int(time.time()) + 1
    events = list(client.events(since=since, until=until, decode=True,
                                filters={"container": uname("c")}))
    actions = [e["Action"] for e in events]
    for want in ("create", "start", "kill", "die", "destroy"):
        assert want in actions, actions
    types = {e["Type"] for e in client.events(since=since, until=until, decode=True,
                                               filters={"type": ["volume", "network"]})}
    assert types == {"volume", "network"}


def test_images_save_load_and_system(client: docker.DockerClient, uname: Callable[[str], str]) -> None:
    img = client.images.get("busybox")
    assert img.tag(uname("t"), "x") is True
    tagged = client.images.get(f"{uname('t')}:x")
    assert tagged.id == img.id and f"{uname('t')}:x" in tagged.tags
    data = b"".join(tagged.save(named=f"{uname('t')}:x"))
    client.images.remove(f"{uname('t')}:x")
    loaded = client.images.load(data)
    assert [i.id for i in loaded] == [img.id]
    assert f"{uname('t')}:x" in client.images.get(img.id).tags
    assert img.history()[0]["Id"] == img.id or img.history()
    client.images.remove(f"{uname('t')}:x")
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get("no-such-image-sdk7:x")
    with pytest.raises(docker.errors.ImageLoadError):
        client.images.load(b"not a tar")
    info = client.info()
    assert info["Swarm"]["LocalNodeState"] == "inactive" and "Containers" in info
    assert "Images" in client.df()
    with pytest.raises(docker.errors.APIError) as e:
        client.swarm.leave()
    assert e.value.status_code == 503
