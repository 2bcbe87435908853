"""The SDK against a fake sietchd: hostile or odd answers, and what goes
on the wire."""

from __future__ import annotations

import base64
import io
import json
import struct
import threading
import time
from collections.abc import Iterator

import pytest
from fakeserver import Exchange, FakeServer, serve

import sietch
from sietch import Client, Sandbox
from sietch._codec import decode

SANDBOX = {
    "id": "sb-1",
    "state": "running",
    "limits": {"cpus": 1, "memory_mib": 256},
    "created_at": "2025-01-02T03:04:05.123456789Z",
    "agent": True,
}


@pytest.fixture
def fake() -> Iterator[list[FakeServer]]:
    servers: list[FakeServer] = []
    yield servers
    for s in servers:
        s.close()


def start(fake: list[FakeServer], handler, unix: bool = False, **kw) -> tuple[FakeServer, Client]:  # type: ignore[no-untyped-def]
    s = serve(handler, unix=unix)
    fake.append(s)
    return s, Client(s.addr, token="tok\n", **kw)


def sandbox(c: Client) -> Sandbox:
    return Sandbox(decode(sietch.SandboxInfo, SANDBOX), c)


def ndjson(*events: dict) -> list[bytes]:
    return [json.dumps(e).encode() + b"\n" for e in events]


def b64(s: bytes) -> str:
    return base64.b64encode(s).decode()


@pytest.mark.parametrize("unix", [False, True])
def test_create_sends_token_and_only_set_fields(fake, unix):
    s, c = start(fake, lambda x: x.send(201, json.dumps(SANDBOX).encode()), unix=unix)
    sb = Sandbox.create(template="t", memory_mib=512, env={"A": "1"}, client=c)
    assert sb.id == "sb-1" and sb.last_info.limits.memory_mib == 256
    assert sb.last_info.created_at.year == 2025
    (req,) = s.seen
    assert (req.method, req.path) == ("POST", "/v1/sandboxes")
    assert req.headers["authorization"] == "Bearer tok"
    # Unknown or empty fields would be refused (unknown_field) or mean
    # something else to the server: only what was set is sent.
    assert json.loads(req.body) == {"template": "t", "limits": {"memory_mib": 512}, "env": {"A": "1"}}


def test_health_sends_no_token(fake, tmp_path):
    body = json.dumps({"status": "ok", "version": "v", "sandboxes": 0, "kvm": "ok"}).encode()
    s = serve(lambda x: x.send(200, body))
    fake.append(s)
    c = Client(s.addr, token_file=str(tmp_path / "missing"))
    assert c.health().status == "ok"
    assert "authorization" not in s.seen[0].headers
    with pytest.raises(sietch.ConfigurationError, match="SIETCH_TOKEN_FILE"):
        c.images()


@pytest.mark.parametrize(
    "status,body,cls,retry",
    [
        (404, {"error": {"code": "not_found", "message": "no sandbox sb-x"}}, sietch.NotFoundError, False),
        (503, {"error": {"code": "agent_unavailable", "message": "agent", "retry": True}}, sietch.AgentUnavailableError, True),
        (400, {"error": {"code": "unknown_field", "message": "json: unknown field"}}, sietch.UnknownFieldError, False),
        (409, {"error": {"code": "in_use", "message": "sandbox sb-2 needs it"}}, sietch.InUseError, False),
        (418, {"error": {"code": "teapot", "message": "new code"}}, sietch.APIError, False),
    ],
)
def test_error_bodies_become_their_class(fake, status, body, cls, retry):
    _, c = start(fake, lambda x: x.send(status, json.dumps(body).encode()))
    with pytest.raises(cls) as e:
        Sandbox.connect("sb-x", client=c)
    assert type(e.value) is cls
    assert e.value.status == status
    assert e.value.code == body["error"]["code"]
    assert e.value.message == body["error"]["message"]
    assert e.value.retry is retry


def test_unknown_field_is_a_bad_request():
    assert issubclass(sietch.UnknownFieldError, sietch.BadRequestError)
    assert issubclass(sietch.NotFoundError, sietch.SietchError)


def test_error_that_is_not_an_error_body(fake):
    _, c = start(fake, lambda x: x.send(502, b"<html>Bad Gateway</html>", ctype="text/html"))
    with pytest.raises(sietch.InternalError) as e:
        Sandbox.list(client=c)
    assert e.value.status == 502 and "Bad Gateway" in e.value.message


@pytest.mark.parametrize(
    "body,match",
    [
        (b"{not json", "not JSON"),
        (json.dumps({"sandboxes": [{"id": "sb-1"}]}).encode(), "required field 'state'"),
        (json.dumps({"sandboxes": [dict(SANDBOX, agent="yes")]}).encode(), "agent: want a boolean"),
        (json.dumps({"sandboxes": [dict(SANDBOX, created_at="yesterday")]}).encode(), "bad date-time"),
        (json.dumps({"boxes": []}).encode(), "'sandboxes'"),
    ],
)
def test_bad_answers_are_protocol_errors(fake, body, match):
    _, c = start(fake, lambda x: x.send(200, body))
    with pytest.raises(sietch.ProtocolError, match=match):
        Sandbox.list(client=c)


def test_unknown_fields_in_answers_are_ignored(fake):
    body = json.dumps({"sandboxes": [dict(SANDBOX, novelty=1)]}).encode()
    _, c = start(fake, lambda x: x.send(200, body))
    assert [s.id for s in Sandbox.list(client=c)] == ["sb-1"]


def test_exec_collects_output_and_exit(fake):
    events = ndjson(
        {"stdout": b64(b"hel")},
        {"stderr": b64(b"oops\n")},
        {"stdout": b64(b"lo\n")},
        {"exit": {"code": 3}},
    )
    s, c = start(fake, lambda x: x.chunked(200, events))
    seen: list[bytes] = []
    r = sandbox(c).exec("sh", "-c", "x", stdin="in", timeout=2.5, on_stdout=seen.append)
    assert (r.stdout, r.stderr, r.exit_code, r.ok) == ("hello\n", "oops\n", 3, False)
    assert seen == [b"hel", b"lo\n"]
    sent = json.loads(s.seen[0].body)
    assert sent == {"cmd": "sh", "args": ["-c", "x"], "stdin": b64(b"in"), "timeout_ms": 2500}


def test_exec_stream_yields_events_in_order(fake):
    events = ndjson({"stdout": b64(b"1")}, {"stderr": b64(b"2")}, {"exit": {"code": -1, "signal": "SIGKILL"}})
    _, c = start(fake, lambda x: x.chunked(200, events))
    got = list(sandbox(c).exec_stream("x"))
    assert [(e.stdout, e.stderr) for e in got[:2]] == [(b"1", None), (None, b"2")]
    assert got[2].exit is not None and got[2].exit.signal == "SIGKILL"


@pytest.mark.parametrize("finish", [True, False])
def test_exec_stream_cut_before_exit(fake, finish):
    _, c = start(fake, lambda x: x.chunked(200, ndjson({"stdout": b64(b"partial")}), finish=finish))
    with pytest.raises(sietch.ProtocolError, match="cut short|ended before the exit"):
        sandbox(c).exec("x")


def test_exec_bad_base64(fake):
    _, c = start(fake, lambda x: x.chunked(200, [b'{"stdout": "!!!"}\n']))
    with pytest.raises(sietch.ProtocolError, match="base64"):
        sandbox(c).exec("x")


def test_run_code_results(fake):
    png = b"\x89PNG\r\n\x1a\nfake"
    events = ndjson(
        {"stdout": "hi\n"},
        {"result": {"text/plain": "<Figure>", "image/png": b64(png)}},
        {"result": {"text/plain": "10"}},
        {"error": {"name": "ValueError", "value": "bad", "traceback": "tb"}},
        {"end": {"status": "error", "execution_count": 4, "duration_ms": 12}},
    )
    s, c = start(fake, lambda x: x.chunked(200, events))
    ex = sandbox(c).run_code("x", language="bash", timeout=1)
    assert s.seen[0].path == "/v1/sandboxes/sb-1/contexts/default-bash/run"
    assert ex.stdout == "hi\n" and ex.text == "10" and ex.results[0].png == png
    assert ex.status == "error" and ex.error is not None and ex.error.name == "ValueError"


def test_run_code_cut_before_end(fake):
    _, c = start(fake, lambda x: x.chunked(200, ndjson({"stdout": "a"})))
    with pytest.raises(sietch.ProtocolError, match="before its end"):
        sandbox(c).run_code("x")


def test_run_code_rejects_unknown_language():
    with pytest.raises(ValueError, match="language 'cobol'"):
        sietch.code.context_id(None, "cobol")


def test_write_streams_a_file_object(fake):
    s, c = start(fake, lambda x: x.send(204))
    data = bytes(range(256)) * 5000
    sandbox(c).files.write("/tmp/f", io.BytesIO(data), mode=0o755)
    req = s.seen[0]
    assert req.headers.get("transfer-encoding") == "chunked"  # not buffered whole
    assert req.body == data
    assert req.path == "/v1/sandboxes/sb-1/files?path=%2Ftmp%2Ff&mode=0755"


def test_open_reads_mode_and_body(fake):
    _, c = start(fake, lambda x: x.send(200, b"abc" * 1000, ctype="application/octet-stream", headers={"X-Sietch-Mode": "0600"}))
    with sandbox(c).files.open("/f") as f:
        assert f.mode == 0o600 and f.size == 3000
        assert b"".join(f.chunks(100)) == b"abc" * 1000


def test_open_cut_short(fake):
    def h(x: Exchange) -> None:
        x.h.send_response(200)
        x.h.send_header("Content-Length", "1000")
        x.h.end_headers()
        x.h.wfile.write(b"only this")
        x.h.close_connection = True

    _, c = start(fake, h)
    with pytest.raises(sietch.ProtocolError, match="cut short"):
        sandbox(c).files.read("/f")


def test_no_sietchd_says_what_to_do(tmp_path):
    c = Client("unix://" + str(tmp_path / "none.sock"), token="t")
    with pytest.raises(sietch.SietchConnectionError, match="is sietchd running.*SIETCH_ADDR"):
        Sandbox.list(client=c)


def test_timeout(fake):
    def slow(x: Exchange) -> None:
        time.sleep(1)
        x.send(200, b'{"sandboxes": []}')

    _, c = start(fake, slow, timeout=0.2)
    with pytest.raises(sietch.SietchTimeoutError):
        Sandbox.list(client=c)


def test_close_cancels_a_blocked_stream(fake):
    release = threading.Event()

    def hang(x: Exchange) -> None:
        x.h.send_response(200)
        x.h.send_header("Transfer-Encoding", "chunked")
        x.h.end_headers()
        x.h.wfile.flush()
        release.wait(5)

    _, c = start(fake, hang)
    stream = sandbox(c).exec_stream("sleep", "100")
    threading.Timer(0.2, stream.close).start()
    t0 = time.monotonic()
    with pytest.raises(sietch.StreamClosedError):
        next(stream)
    assert time.monotonic() - t0 < 3
    release.set()


@pytest.mark.parametrize(
    "env,addr",
    [
        ({"SIETCH_STATE_DIR": "/s"}, "/s/sietchd.sock"),
        ({"SIETCH_STATE_DIR": "/s", "SIETCH_ADDR": "tcp://h:1"}, "tcp://h:1"),
        ({}, "/var/lib/sietch/sietchd.sock"),
    ],
)
def test_address_from_env(monkeypatch, env, addr):
    for k in ("SIETCH_ADDR", "SIETCH_STATE_DIR", "SIETCH_TOKEN_FILE"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert Client().addr == addr


@pytest.mark.parametrize("addr", ["ftp://x", "unix://relative.sock", "http://"])
def test_bad_address(addr):
    with pytest.raises(sietch.ConfigurationError):
        Client(addr, token="t")


def frame(typ: int, payload: bytes) -> bytes:
    return struct.pack(">BI", typ, len(payload)) + payload


def test_exec_interactive_frames(fake):
    def h(x: Exchange) -> None:
        x.h.send_response(101)
        x.h.send_header("Connection", "Upgrade")
        x.h.send_header("Upgrade", "sietch-exec.v1")
        x.h.end_headers()
        # The first frames arrive with the headers, in one write.
        x.h.wfile.write(frame(16, b'{"id":"p1","pid":42}') + frame(18, b"warn\n"))
        x.h.wfile.flush()
        got = b""
        while True:
            typ, n = struct.unpack(">BI", x.h.rfile.read(5))
            body = x.h.rfile.read(n)
            if typ == 2:
                break
            got += body if typ == 1 else b"[%d %s]" % (typ, body)
        x.h.wfile.write(frame(17, got) + frame(19, b'{"code":-1,"signal":"SIGINT"}'))
        x.h.wfile.flush()
        x.h.close_connection = True

    s, c = start(fake, h)
    with sandbox(c).exec_interactive("cat", tty=(24, 80)) as sess:
        assert (sess.id, sess.pid) == ("p1", 42)
        sess.write("hello ")
        sess.write(b"x" * 10)
        sess.signal("INT")
        sess.close_stdin()
        r = sess.wait()
    assert r.stderr == "warn\n"
    assert r.stdout == "hello " + "x" * 10 + '[4 {"signal": "INT"}]'
    assert (r.exit_code, r.signal) == (-1, "SIGINT")
    assert s.seen[0].headers["upgrade"] == "sietch-exec.v1"
    assert json.loads(s.seen[0].body)["tty"] == {"rows": 24, "cols": 80}


def test_exec_interactive_cut_short(fake):
    def h(x: Exchange) -> None:
        x.h.send_response(101)
        x.h.send_header("Connection", "Upgrade")
        x.h.send_header("Upgrade", "sietch-exec.v1")
        x.h.end_headers()
        x.h.wfile.write(frame(16, b'{"id":"p1","pid":1}') + frame(17, b"par")[:-1])
        x.h.close_connection = True

    _, c = start(fake, h)
    sess = sandbox(c).exec_interactive("cat")
    with pytest.raises(sietch.ProtocolError, match="ended before the exit"):
        sess.wait()
