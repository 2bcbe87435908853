"""One Linux sandbox from the test template, through everything that needs
the guest agent. Every guest syscall is emulated on the test machines
(exec takes seconds), so the tests share one sandbox and each does a lot;
they run in file order."""

from __future__ import annotations

import io
import os
import tarfile
import urllib.request
from collections.abc import Iterator

import pytest

import sietch
from sietch import Client, Sandbox

PNG_CODE = """
import struct, zlib
class Dot:
    def _repr_png_(self):
        def chunk(kind, data):
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
        return b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\\x00\\x80")) + chunk(b"IEND", b"")
Dot()
"""


@pytest.fixture(scope="module")
def sb(client: Client, template: str) -> Iterator[Sandbox]:
    with Sandbox.create(template=template, env={"SDK_TEST": "yes"}, client=client) as s:
        yield s


def test_exec(sb: Sandbox):
    r = sb.exec("sh", "-c", 'cat; echo "$SDK_TEST $X $(pwd)"; echo oops >&2; exit 3', env={"X": "x"}, cwd="/tmp", stdin="in\n")
    assert (r.exit_code, r.stdout, r.stderr) == (3, "in\nyes x /tmp\n", "oops\n")
    assert sb.exec("sh", "-c", "sleep 30", timeout=1).timed_out


def test_exec_interactive(sb: Sandbox):
    big = b"0123456789abcdef" * (128 << 10)  # 2 MiB: several frames
    with sb.exec_interactive("sh", "-c", "wc -c; echo done >&2; exit 2") as sess:
        assert sess.pid > 0
        sess.write(big)
        sess.close_stdin()
        r = sess.wait()
    assert (r.stdout.strip(), r.stderr, r.exit_code) == (str(len(big)), "done\n", 2)


def test_exec_stream_in_order(sb: Sandbox):
    script = "echo a; sleep 0.5; echo b >&2; sleep 0.5; echo c"
    got = [(e.stdout, e.stderr, e.exit.code if e.exit else None) for e in sb.exec_stream("sh", "-c", script)]
    assert got == [(b"a\n", None, None), (None, b"b\n", None), (b"c\n", None, None), (None, None, 0)]


def test_run_code(sb: Sandbox):
    assert sb.run_code("x = 5").status == "ok"
    seen: list[sietch.RunEvent] = []
    ex = sb.run_code("print('hi')\nx * 2", on_event=seen.append)
    assert (ex.text, ex.stdout) == ("10", "hi\n")
    assert [e.end is not None for e in seen] == [False, False, True]
    png = sb.run_code(PNG_CODE).results[0].png
    assert png is not None and png.startswith(b"\x89PNG\r\n\x1a\n")
    err = sb.run_code("1 / 0")
    assert err.status == "error" and err.error is not None and err.error.name == "ZeroDivisionError"


def test_files(sb: Sandbox):
    fs = sb.files
    assert fs.mkdir("/tmp/sdk/a/b", parents=True).type == "dir"
    data = os.urandom(2 << 20)
    fs.write("/tmp/sdk/a/big", (data[i : i + 65536] for i in range(0, len(data), 65536)), mode=0o600)
    with fs.open("/tmp/sdk/a/big") as f:
        assert f.mode == 0o600
        assert b"".join(f.chunks()) == data
    fs.write("/tmp/sdk/a/small", "hello")
    assert [(e.name, e.type) for e in fs.list("/tmp/sdk/a")] == [("b", "dir"), ("big", "file"), ("small", "file")]
    assert fs.stat("/tmp/sdk/a/big").size == len(data)
    assert fs.rename("/tmp/sdk/a/small", "/tmp/sdk/a/b/moved").name == "moved"
    assert fs.read_text("/tmp/sdk/a/b/moved") == "hello"
    with pytest.raises(sietch.ConflictError):
        fs.remove("/tmp/sdk/a")
    fs.remove("/tmp/sdk/a", recursive=True)
    assert not fs.exists("/tmp/sdk/a")
    with pytest.raises(sietch.NotFoundError):
        fs.read("/tmp/sdk/a/big")


def test_tar_and_watch(sb: Sandbox):
    with sb.files.watch("/tmp", recursive=True) as events:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for name, body in [("t/one", b"1"), ("t/sub/two", b"22")]:
                info = tarfile.TarInfo(name)
                info.size = len(body)
                tar.addfile(info, io.BytesIO(body))
        res = sb.files.upload_tar("/tmp/tree", buf.getvalue())
        assert (res.files, res.bytes) == (2, 3)
        first = next(events)
        assert first.type == "create" and first.path is not None and first.path.startswith("/tmp/tree")
    with sb.files.download_tar("/tmp/tree") as f, tarfile.open(fileobj=f, mode="r|") as tar:
        got = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]
    assert got == {"t/one": b"1", "t/sub/two": b"22"}


def test_background_process_and_port(sb: Sandbox):
    p = sb.processes.start("sh", "-c", "echo started; exit 4")
    assert p.wait(timeout=120).exit.code == 4  # type: ignore[union-attr]
    assert b"".join(e.stdout or b"" for e in p.output()) == b"started\n"
    assert p.id in [q.id for q in sb.processes.list()]
    p.kill()
    # A server in the warm python context: no new process to start.
    sb.run_code(
        "import http.server, threading\n"
        "srv = http.server.HTTPServer(('127.0.0.1', 8765), http.server.SimpleHTTPRequestHandler)\n"
        "threading.Thread(target=srv.serve_forever, daemon=True).start()"
    )
    sb.files.write("/tmp/index.html", "served")
    sb.run_code("import os; os.chdir('/tmp')")
    port = sb.ports.forward(8765)
    try:
        with urllib.request.urlopen(f"http://{port.host_addr}:{port.host_port}/index.html", timeout=60) as r:
            assert r.read() == b"served"
        assert port in sb.ports.list()
    finally:
        sb.ports.delete(port)
    assert sb.ports.list() == []


def test_snapshot_restore_fork(client: Client, sb: Sandbox):
    sb.files.write("/tmp/marker", "before")
    snap = sb.snapshot()
    sb.files.write("/tmp/marker", "after")
    with Sandbox.restore(snap, client=client) as restored:
        assert restored.files.read_text("/tmp/marker") == "before"
        assert restored.run_code("x").text == "5"  # the python context came along
    forks = sb.fork(2)
    try:
        assert [f.files.read_text("/tmp/marker") for f in forks] == ["after", "after"]
    finally:
        for f in forks:
            f.delete()


def test_desktop_without_an_x_server(sb: Sandbox):
    # This image runs no X server: the agent says so, and sietchd refuses
    # an empty action list before asking it.
    with pytest.raises(sietch.ConflictError, match="X server"):
        sb.screenshot()
    with pytest.raises(sietch.BadRequestError, match="actions"):
        sb.input([])
    with pytest.raises(sietch.ConflictError, match="X server"):
        sb.vnc()
    with pytest.raises(sietch.BadRequestError, match="URL"):
        sb.open_url("javascript:alert(1)")
