"""Interactive exec: a command's stdio on one upgraded connection
(Upgrade: sietch-exec.v1; framing in wire/execstream and the API
document): stdin of any size, a terminal, resizes and signals."""

from __future__ import annotations

import json
import socket
import struct
import threading
from typing import Any

from . import _codec
from .client import Response
from .commands import CommandResult
from .errors import ERROR_CLASSES, APIError, ProtocolError, SietchConnectionError, StreamClosedError
from .models import ExecEvent, ExecExit, Started

PROTOCOL = "sietch-exec.v1"
MAX_PAYLOAD = 1 << 20

# Frame types (wire/execstream).
STDIN, STDIN_EOF, RESIZE, SIGNAL = 1, 2, 3, 4
STARTED, STDOUT, STDERR, EXIT, ERROR = 16, 17, 18, 19, 20

_HEADER = struct.Struct(">BI")


class ExecSession:
    """A command running with its stdio on an exec stream. Iterate it for
    output events (the last has ``exit``), or ``wait()`` for all of it;
    ``write``, ``close_stdin``, ``resize`` and ``signal`` may be called from
    any thread meanwhile. ``close`` (or leaving ``with``) hangs up, which
    ends the command if it still runs."""

    def __init__(self, resp: Response) -> None:
        self._resp = resp
        sock = resp.conn.sock
        if sock is None:
            raise ProtocolError(f"{resp.what}: switched protocols but the connection is gone")
        self._sock: socket.socket = sock
        # The response's buffered reader may already hold the first frames.
        self._rfile = resp.raw.fp
        self._wlock = threading.Lock()
        self._done = False
        self.exit: ExecExit | None = None
        typ, payload = self._next_frame()
        if typ != STARTED:
            self.close()
            raise ProtocolError(f"{resp.what}: the exec stream began with a frame of type {typ}, not started")
        st = _codec.decode(Started, _json(payload, typ), "started frame")
        self.id, self.pid = st.id, st.pid

    def __repr__(self) -> str:
        return f"ExecSession(id={self.id!r}, pid={self.pid})"

    # -- output ---------------------------------------------------------------

    def _read_exact(self, n: int) -> bytes:
        try:
            data = self._rfile.read(n) if n else b""
        except OSError as e:
            if self._resp.closed:
                raise StreamClosedError(f"{self._resp.what}: the exec stream was closed") from None
            raise SietchConnectionError(f"{self._resp.what}: the exec stream broke: {e}") from None
        except (AttributeError, ValueError):
            raise StreamClosedError(f"{self._resp.what}: the exec stream was closed") from None
        if len(data) != n:
            raise ProtocolError(
                f"{self._resp.what}: the exec stream ended before the exit status (sandbox stopped or sietchd restarted?)"
            )
        return data

    def _next_frame(self) -> tuple[int, bytes]:
        typ, n = _HEADER.unpack(self._read_exact(_HEADER.size))
        if n > MAX_PAYLOAD:
            raise ProtocolError(f"{self._resp.what}: a frame of type {typ} has {n} bytes, over the {MAX_PAYLOAD} allowed")
        return typ, self._read_exact(n)

    def __iter__(self) -> ExecSession:
        return self

    def __next__(self) -> ExecEvent:
        while not self._done:
            typ, payload = self._next_frame()
            if typ == STDOUT:
                return ExecEvent(stdout=payload)
            if typ == STDERR:
                return ExecEvent(stderr=payload)
            if typ == EXIT:
                self.exit = _codec.decode(ExecExit, _json(payload, typ), "exit frame")
                self._finish()
                return ExecEvent(exit=self.exit)
            if typ == ERROR:
                self._finish()
                err = _json(payload, typ)
                code = str(err.get("code", "internal")) if isinstance(err, dict) else "internal"
                msg = str(err.get("message", "")) if isinstance(err, dict) else str(err)
                raise ERROR_CLASSES.get(code, APIError)(msg, status=500, code=code)
            # Frame types this SDK does not know are skipped.
        raise StopIteration

    def wait(self) -> CommandResult:
        """Read the output to the exit and return it all."""
        out: list[bytes] = []
        err: list[bytes] = []
        for ev in self:
            out.append(ev.stdout or b"")
            err.append(ev.stderr or b"")
        if self.exit is None:
            raise ProtocolError(f"{self._resp.what}: the exec stream ended before the exit status")
        return CommandResult(
            exit_code=self.exit.code,
            stdout_bytes=b"".join(out),
            stderr_bytes=b"".join(err),
            signal=self.exit.signal,
            timed_out=bool(self.exit.timed_out),
        )

    # -- input ----------------------------------------------------------------

    def _send(self, typ: int, payload: bytes = b"") -> None:
        with self._wlock:
            try:
                first = True
                while first or payload:
                    chunk, payload = payload[:MAX_PAYLOAD], payload[MAX_PAYLOAD:]
                    self._sock.sendall(_HEADER.pack(typ, len(chunk)) + chunk)
                    first = False
            except OSError as e:
                raise SietchConnectionError(f"{self._resp.what}: write to the exec stream: {e}") from None

    def write(self, data: bytes | str) -> None:
        """Send bytes (text: UTF-8) to the command's stdin."""
        self._send(STDIN, data.encode() if isinstance(data, str) else data)

    def close_stdin(self) -> None:
        """End the command's stdin (on a terminal: types end-of-file)."""
        self._send(STDIN_EOF)

    def resize(self, rows: int, cols: int) -> None:
        """Set the command's terminal size."""
        self._send(RESIZE, json.dumps({"rows": rows, "cols": cols}).encode())

    def signal(self, signal: str) -> None:
        """Send a signal ("SIGINT", "INT" or "2") to the command's group."""
        self._send(SIGNAL, json.dumps({"signal": signal}).encode())

    # -- end ------------------------------------------------------------------

    def _finish(self) -> None:
        self._done = True
        self.close()

    def close(self) -> None:
        self._done = True
        self._resp.close()

    def __enter__(self) -> ExecSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _json(payload: bytes, typ: int) -> Any:
    try:
        return json.loads(payload)
    except ValueError:
        raise ProtocolError(f"exec stream: the frame of type {typ} is not JSON: {payload[:80]!r}") from None
