"""Files in a sandbox: streamed reads and writes, directory calls, tar
archives of whole trees, and watches."""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from typing import IO, TYPE_CHECKING

from . import _codec
from ._stream import EventStream, RemoteFile
from .client import DEFAULT, Body, _seg
from .errors import NotFoundError, ProtocolError
from .models import FileInfo, FileList, MkdirRequest, RenameRequest, TarResult, WatchEvent

if TYPE_CHECKING:
    from .sandbox import Sandbox

_MAX_WATCH_EVENT = 64 << 10
# Streamed bodies have no bound of their own: the socket timeout bounds
# each read and write, not the whole transfer.
_TRANSFER_TIMEOUT = DEFAULT


class Files:
    """``sb.files``: paths are absolute paths in the guest."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._sb = sandbox

    def _path(self, rest: str = "") -> str:
        return f"/v1/sandboxes/{_seg(self._sb.id)}/files{rest}"

    def open(self, path: str) -> RemoteFile:
        """Start downloading ``path``: a binary file object to read (and
        close) as the bytes arrive; ``.mode`` holds its permission bits."""
        resp = self._sb._client.request("GET", self._path(), query={"path": path}, timeout=_TRANSFER_TIMEOUT)
        header = resp.header("X-Sietch-Mode")
        try:
            mode = int(header, 8) if header else 0o644
        except ValueError:
            resp.close()
            raise ProtocolError(f"read {path}: bad X-Sietch-Mode header {header!r}") from None
        return RemoteFile(resp, mode=mode)

    def read(self, path: str) -> bytes:
        """The whole file (use ``open`` for large ones)."""
        with self.open(path) as f:
            return f.read()

    def read_text(self, path: str, encoding: str = "utf-8") -> str:
        return self.read(path).decode(encoding)

    def write(self, path: str, data: bytes | str | IO[bytes] | Iterable[bytes], mode: int | str | None = None) -> None:
        """Write ``path`` (replaced atomically; its parent must exist).
        ``data`` may be bytes, text (UTF-8), a binary file object or an
        iterable of bytes; the last two are streamed, never held whole.
        ``mode`` defaults to the replaced file's bits, or 0644."""
        query = {"path": path}
        if mode is not None:
            query["mode"] = mode if isinstance(mode, str) else format(mode, "04o")
        body: Body = data.encode() if isinstance(data, str) else data
        self._sb._client.call(
            "PUT",
            self._path(),
            query=query,
            body=body,
            headers={"Content-Type": "application/octet-stream"},
            expect=204,
            timeout=_TRANSFER_TIMEOUT,
        )

    def list(self, path: str) -> builtins.list[FileInfo]:
        """A directory's entries, sorted by name."""
        doc = self._sb._client.call("GET", self._path("/list"), query={"path": path})
        return _codec.decode(FileList, doc).entries

    def stat(self, path: str) -> FileInfo:
        """Describe ``path`` itself (a symlink is described, not followed)."""
        return _codec.decode(FileInfo, self._sb._client.call("GET", self._path("/stat"), query={"path": path}))

    def exists(self, path: str) -> bool:
        try:
            self.stat(path)
        except NotFoundError:
            return False
        return True

    def remove(self, path: str, recursive: bool = False) -> None:
        """Remove a file, a symlink or an empty directory; with
        ``recursive``, a whole tree. A non-empty directory without it
        raises ConflictError."""
        q = {"path": path, "recursive": "true" if recursive else "false"}
        self._sb._client.call("DELETE", self._path(), query=q, expect=204)

    def mkdir(self, path: str, parents: bool = False, mode: int | str | None = None) -> FileInfo:
        """Make a directory (with ``parents``, its missing parents too, and
        an existing directory is no error)."""
        m = mode if isinstance(mode, str) or mode is None else format(mode, "04o")
        req = MkdirRequest(path=path, parents=parents or None, mode=m)
        return _codec.decode(FileInfo, self._sb._client.call("POST", self._path("/mkdir"), json_body=req))

    def rename(self, src: str, dst: str) -> FileInfo:
        """Move ``src`` to ``dst``; a file there is replaced, a directory
        never is (ConflictError). Describes what is now at ``dst``."""
        req = RenameRequest(from_=src, to=dst)
        return _codec.decode(FileInfo, self._sb._client.call("POST", self._path("/rename"), json_body=req))

    def download_tar(self, path: str) -> RemoteFile:
        """The tree under directory ``path`` as a tar archive, streamed:
        ``tarfile.open(fileobj=f, mode="r|")`` reads it as it comes. A
        read error means the archive was cut short."""
        resp = self._sb._client.request("GET", self._path("/tar"), query={"path": path}, timeout=_TRANSFER_TIMEOUT)
        return RemoteFile(resp)

    def upload_tar(self, path: str, archive: bytes | IO[bytes] | Iterable[bytes]) -> TarResult:
        """Extract a tar archive into directory ``path`` (made if
        missing). Nothing lands outside it; the first refused entry ends
        the extraction with an error naming it."""
        doc = self._sb._client.call(
            "PUT",
            self._path("/tar"),
            query={"path": path},
            body=archive,
            headers={"Content-Type": "application/x-tar"},
            timeout=_TRANSFER_TIMEOUT,
        )
        return _codec.decode(TarResult, doc)

    def watch(self, path: str, recursive: bool = False) -> EventStream[WatchEvent]:
        """Watch directory ``path`` (``recursive``: the directories under
        it too). When this returns the watch is in place; iterate the
        events, close to stop. The stream ends by itself when the
        directory is removed or moved."""
        resp = self._sb._client.request(
            "GET",
            self._path("/watch"),
            query={"path": path, "recursive": "true" if recursive else "false"},
            headers={"Accept": "application/x-ndjson"},
            timeout=None,
        )
        return EventStream(resp, WatchEvent, max_line=_MAX_WATCH_EVENT)
