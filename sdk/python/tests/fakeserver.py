"""A tiny local HTTP server that answers as a test tells it to, for the
answers a real sietchd would rarely give (bad JSON, streams cut short)."""

from __future__ import annotations

import http.server
import os
import socketserver
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Seen:
    """One request as the server got it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


Handler = Callable[["Exchange"], None]


@dataclass
class Exchange:
    """A request and the means to answer it."""

    req: Seen
    h: http.server.BaseHTTPRequestHandler

    def send(self, status: int, body: bytes = b"", ctype: str = "application/json", headers: dict[str, str] | None = None) -> None:
        self.h.send_response(status)
        self.h.send_header("Content-Type", ctype)
        self.h.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.h.send_header(k, v)
        self.h.end_headers()
        self.h.wfile.write(body)

    def chunked(self, status: int, chunks: list[bytes], finish: bool = True) -> None:
        """A chunked answer; without ``finish`` the connection drops
        before the last chunk, as when sietchd dies mid-stream."""
        self.h.send_response(status)
        self.h.send_header("Content-Type", "application/x-ndjson")
        self.h.send_header("Transfer-Encoding", "chunked")
        self.h.end_headers()
        for c in chunks:
            self.h.wfile.write(b"%x\r\n%s\r\n" % (len(c), c))
            self.h.wfile.flush()
        if finish:
            self.h.wfile.write(b"0\r\n\r\n")
        self.h.close_connection = True


@dataclass
class FakeServer:
    handler: Handler
    seen: list[Seen] = field(default_factory=list)
    addr: str = ""
    _server: socketserver.BaseServer | None = None

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def _handler_class(fake: FakeServer) -> type[http.server.BaseHTTPRequestHandler]:
    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _any(self) -> None:
            body = b""
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                while True:
                    n = int(self.rfile.readline().strip(), 16)
                    if n == 0:
                        self.rfile.readline()
                        break
                    body += self.rfile.read(n)
                    self.rfile.readline()
            elif self.headers.get("Content-Length"):
                body = self.rfile.read(int(self.headers["Content-Length"]))
            seen = Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            fake.seen.append(seen)
            fake.handler(Exchange(seen, self))

        do_GET = do_POST = do_PUT = do_DELETE = _any

        def log_message(self, format: str, *args: object) -> None:
            pass

        def address_string(self) -> str:
            return "test"

    return H


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def serve(handler: Handler, unix: bool = False) -> FakeServer:
    fake = FakeServer(handler)
    server: socketserver.BaseServer
    if unix:
        path = os.path.join(tempfile.mkdtemp(prefix="sietch-fake-"), "sietchd.sock")
        server = _UnixServer(path, _handler_class(fake))
        fake.addr = "unix://" + path
    else:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler_class(fake))
        server.daemon_threads = True
        fake.addr = f"http://127.0.0.1:{server.server_address[1]}"
    fake._server = server
    threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
    return fake
