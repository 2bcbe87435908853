"""Answers read as they arrive: NDJSON event streams and byte streams."""

from __future__ import annotations

import io
from collections.abc import Callable, Generator, Iterator
from typing import Any, Generic, TypeVar

from . import _codec
from .client import Response
from .errors import ProtocolError

E = TypeVar("E")


class EventStream(Generic[E]):
    """An NDJSON stream of events, read lazily: iterate it, and close it
    (or leave the ``with`` block, or break out of a ``for``) to hang up,
    which ends the server's side too (a run is interrupted, a watch
    stops). ``close`` may be called from another thread to cancel.

    With ``last`` set, the stream must end with the event ``last`` accepts;
    a stream that stops before it was cut short and raises ProtocolError.
    """

    def __init__(
        self,
        resp: Response,
        cls: type[E],
        *,
        max_line: int,
        last: Callable[[E], bool] | None = None,
        cut_short: str = "",
    ) -> None:
        self._resp = resp
        self._cls = cls
        self._last = last
        self._cut_short = cut_short
        self._events = self._read(max_line)
        self.ended = False  # the last event came

    def _read(self, max_line: int) -> Generator[E, None, None]:
        try:
            for obj in self._resp.lines(max_line):
                ev = _codec.decode(self._cls, obj, f"{self._resp.what}: event")
                yield ev
                if self._last is not None and self._last(ev):
                    self.ended = True
                    return
            if self._last is not None:
                raise ProtocolError(
                    f"{self._resp.what}: the stream ended before {self._cut_short or 'its last event'} "
                    "(sandbox stopped or sietchd restarted?)"
                )
        finally:
            self._resp.close()

    def __iter__(self) -> EventStream[E]:
        return self

    def __next__(self) -> E:
        return next(self._events)

    def close(self) -> None:
        self._resp.close()
        self._events.close()

    def __enter__(self) -> EventStream[E]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RemoteFile(io.BufferedIOBase):
    """A file (or tar archive, or console log) being downloaded: a binary
    file object read straight off the connection, never held whole.
    ``mode`` is the file's permission bits, ``size`` its length when the
    server said it."""

    def __init__(self, resp: Response, mode: int | None = None) -> None:
        super().__init__()
        self._resp = resp
        self.mode = mode
        length = resp.header("Content-Length")
        self.size: int | None = int(length) if length and length.isdigit() else None
        self.name = resp.what

    def readable(self) -> bool:
        return True

    def read(self, n: int | None = -1) -> bytes:
        self._check()
        return self._resp.read(-1 if n is None else n)

    def read1(self, n: int = -1) -> bytes:
        self._check()
        with self._resp._client._reading(self._resp.what, self._resp):
            return self._resp.raw.read1(n)

    def readinto(self, b: Any) -> int:
        self._check()
        return self._resp.readinto(b)

    def readline(self, limit: int | None = -1) -> bytes:
        self._check()
        with self._resp._client._reading(self._resp.what, self._resp):
            return self._resp.raw.readline(-1 if limit is None else limit)

    def chunks(self, size: int = 256 << 10) -> Iterator[bytes]:
        """The rest of the body in pieces of at most ``size`` bytes."""
        while True:
            b = self.read1(size)
            if not b:
                return
            yield b

    def _check(self) -> None:
        if self.closed:
            raise ValueError("read from a closed RemoteFile")

    def close(self) -> None:
        if not self.closed:
            self._resp.close()
        super().close()
