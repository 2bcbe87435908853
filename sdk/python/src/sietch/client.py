"""The connection to one sietchd: where it listens, the bearer token, HTTP
over a unix socket or TCP, errors and timeouts; and the calls that belong
to no sandbox (health, metrics, images, snapshots, the API document)."""

from __future__ import annotations

import http.client
import io
import json
import os
import socket
import tarfile
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any, Union

from . import _codec
from .errors import (
    ERROR_CLASSES,
    APIError,
    ConfigurationError,
    ProtocolError,
    SietchConnectionError,
    SietchError,
    SietchTimeoutError,
    StreamClosedError,
    error_from_response,
)
from .models import Health, Image, ImageBuildEvent, Snapshot

DEFAULT_ADDR = "/var/lib/sietch/sietchd.sock"
DEFAULT_TOKEN_FILE = "/var/lib/sietch/token"

#: A request body: bytes, a binary file object, or an iterable of bytes
#: (sent with chunked transfer encoding, never held whole in memory).
Body = Union[bytes, IO[bytes], Iterable[bytes]]


class _Default:
    """The client's own timeout (as opposed to None: no timeout)."""

    def __repr__(self) -> str:
        return "DEFAULT"


DEFAULT: Any = _Default()

# Bounds on what is read into memory from one answer.
_MAX_JSON = 64 << 20
_MAX_ERROR = 64 << 10
_MAX_TEXT = 32 << 20
_MAX_BUILD_LINE = 1 << 20  # one event of a build stream
# How much of a streamed request body (a file object) is sent at a time.
_BLOCK = 256 << 10


class _UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP/1.1 over a unix socket."""

    def __init__(self, path: str, timeout: float | None) -> None:
        super().__init__("sietchd", timeout=timeout, blocksize=_BLOCK)
        self._path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.settimeout(self.timeout)
            s.connect(self._path)
        except BaseException:
            s.close()
            raise
        self.sock = s


class Response:
    """An answer being read; close it (or use ``with``) to drop the
    connection, which also ends what the server streams."""

    def __init__(self, client: Client, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse, what: str):
        self._client = client
        self.conn = conn
        self.raw = resp
        self.what = what
        self.status = resp.status
        self.closed = False

    def header(self, name: str) -> str | None:
        return self.raw.getheader(name)

    def read(self, n: int = -1) -> bytes:
        with self._client._reading(self.what, self):
            return self.raw.read(n) if n >= 0 else self.raw.read()

    def readinto(self, b: Any) -> int:
        with self._client._reading(self.what, self):
            return self.raw.readinto(b)

    def read_bounded(self, limit: int) -> bytes:
        data = self.read(limit + 1)
        if len(data) > limit:
            raise ProtocolError(f"{self.what}: the answer is larger than {limit >> 20} MiB")
        return data

    def json(self) -> Any:
        data = self.read_bounded(_MAX_JSON)
        try:
            return json.loads(data)
        except ValueError as e:
            raise ProtocolError(f"{self.what}: the answer is not JSON ({e}): {data[:80]!r}") from None

    def lines(self, max_line: int) -> Iterator[Any]:
        """The decoded JSON values of an NDJSON body, one per line, until
        the body ends."""
        while True:
            with self._client._reading(self.what, self):
                line = self.raw.readline(max_line + 1)
            if not line:
                if self.closed:
                    # close() from another thread can end the read as a
                    # clean end of the body.
                    raise StreamClosedError(f"{self.what}: the stream was closed")
                return
            if len(line) > max_line:
                raise ProtocolError(f"{self.what}: a stream line is longer than {max_line} bytes")
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except ValueError as e:
                raise ProtocolError(f"{self.what}: bad line in the stream ({e}): {line[:80]!r}") from None

    def close(self) -> None:
        self.closed = True
        # Shut the socket down first so that a read blocked in another
        # thread returns (cancellation).
        sock = self.conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.raw.close()
        self.conn.close()

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Client:
    """One sietchd. Without arguments it connects as the ``sietch`` CLI
    does: env SIETCH_ADDR (unix:///path, /path, http://host:port or
    tcp://host:port), SIETCH_TOKEN_FILE, SIETCH_STATE_DIR=DIR (DIR/sietchd.sock
    and DIR/token), else /var/lib/sietch/sietchd.sock and
    /var/lib/sietch/token.

    ``timeout`` bounds each ordinary call (seconds, None: no bound);
    ``long_timeout`` the calls that boot, restore or snapshot machines.
    Streams (exec, run_code, watch, console) wait for output as long as it
    takes unless their call is given a timeout. A Client is safe to share
    between threads: each call uses its own connection.
    """

    def __init__(
        self,
        addr: str | None = None,
        token: str | None = None,
        *,
        token_file: str | None = None,
        timeout: float | None = 60.0,
        long_timeout: float | None = 900.0,
        user_agent: str = "sietch-python",
    ) -> None:
        state = os.environ.get("SIETCH_STATE_DIR", "")
        if addr is None:
            addr = os.environ.get("SIETCH_ADDR") or (os.path.join(state, "sietchd.sock") if state else DEFAULT_ADDR)
        if token is None and token_file is None:
            token_file = os.environ.get("SIETCH_TOKEN_FILE") or (
                os.path.join(state, "token") if state else DEFAULT_TOKEN_FILE
            )
        self.addr = addr
        self.timeout = timeout
        self.long_timeout = long_timeout
        self.user_agent = user_agent
        self._token = token.strip() if token is not None else None
        self._token_file = token_file
        self._lock = threading.Lock()
        self._scheme, self._host, self._port, self._unix = _parse_addr(addr)

    def __repr__(self) -> str:
        return f"Client({self.addr!r})"

    # -- plumbing ---------------------------------------------------------

    def _token_value(self) -> str:
        with self._lock:
            if self._token is None:
                path = self._token_file or DEFAULT_TOKEN_FILE
                try:
                    with open(path, encoding="utf-8") as f:
                        self._token = f.read().strip()
                except OSError as e:
                    raise ConfigurationError(
                        f"read the sietchd token {path}: {e.strerror or e} (sietchd writes it at first start; "
                        "set SIETCH_TOKEN_FILE or SIETCH_STATE_DIR, pass Client(token=...), "
                        "and check you may read it)"
                    ) from None
            return self._token

    def _connection(self, timeout: float | None) -> http.client.HTTPConnection:
        if self._unix is not None:
            return _UnixHTTPConnection(self._unix, timeout)
        if self._scheme == "https":
            return http.client.HTTPSConnection(self._host, self._port, timeout=timeout, blocksize=_BLOCK)
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout, blocksize=_BLOCK)

    def _resolve_timeout(self, timeout: Any, long: bool = False) -> float | None:
        if timeout is DEFAULT:
            return self.long_timeout if long else self.timeout
        t: float | None = timeout
        return t

    class _ReadGuard:
        def __init__(self, client: Client, what: str, resp: Response | None) -> None:
            self.client, self.what, self.resp = client, what, resp

        def __enter__(self) -> None:
            return None

        def __exit__(self, typ: Any, exc: BaseException | None, tb: Any) -> None:
            if exc is None or isinstance(exc, SietchError):
                return
            if self.resp is not None and self.resp.closed and isinstance(exc, Exception):
                # Closed by another thread mid-read: http.client fails in
                # odd ways then.
                raise StreamClosedError(f"{self.what}: the stream was closed") from None
            if isinstance(exc, TimeoutError):
                raise SietchTimeoutError(f"{self.what}: no answer within the timeout") from None
            if isinstance(exc, http.client.IncompleteRead):
                raise ProtocolError(
                    f"{self.what}: the answer was cut short (sandbox stopped or sietchd restarted?)"
                ) from None
            if isinstance(exc, (http.client.HTTPException, ValueError)):
                raise ProtocolError(f"{self.what}: bad answer: {exc!r}") from None
            if isinstance(exc, OSError):
                raise SietchConnectionError(f"{self.what}: the connection to sietchd broke: {exc}") from None

    def _reading(self, what: str, resp: Response | None = None) -> Client._ReadGuard:
        return Client._ReadGuard(self, what, resp)

    def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        json_body: Any = None,
        body: Body | None = None,
        headers: dict[str, str] | None = None,
        expect: tuple[int, ...] = (200,),
        timeout: Any = DEFAULT,
        long: bool = False,
        auth: bool = True,
    ) -> Response:
        """Send a request and return the answer once its status and
        headers are in, if the status is one of ``expect``; any other
        status raises the API error it carries."""
        what = f"{method} {path}"
        if query:
            path += "?" + urllib.parse.urlencode(query)
        hdrs = {"User-Agent": self.user_agent, "Accept": "application/json"}
        if auth:
            hdrs["Authorization"] = "Bearer " + self._token_value()
        payload: Any = body
        if json_body is not None:
            payload = json.dumps(_codec.encode(json_body)).encode()
            hdrs["Content-Type"] = "application/json"
        hdrs.update(headers or {})
        conn = self._connection(self._resolve_timeout(timeout, long))
        try:
            try:
                conn.request(method, path, body=payload, headers=hdrs)
            except BrokenPipeError:
                # The server answered (an error) before reading the whole
                # body; its answer is still there to read.
                pass
            resp = conn.getresponse()
        except TimeoutError:
            conn.close()
            raise SietchTimeoutError(f"{what}: no answer from sietchd within the timeout") from None
        except (FileNotFoundError, ConnectionRefusedError) as e:
            conn.close()
            raise SietchConnectionError(
                f"{what}: cannot reach sietchd at {self.addr}: {e.strerror or e} (is sietchd running? "
                "set SIETCH_ADDR or SIETCH_STATE_DIR, or pass Client(addr=...))"
            ) from None
        except PermissionError as e:
            conn.close()
            raise SietchConnectionError(
                f"{what}: cannot open sietchd's socket {self.addr}: {e.strerror or e} "
                "(run as a user who may, e.g. in sietchd's group)"
            ) from None
        except http.client.HTTPException as e:
            conn.close()
            raise ProtocolError(f"{what}: bad answer from sietchd: {e!r}") from None
        except OSError as e:
            conn.close()
            raise SietchConnectionError(f"{what}: talking to sietchd at {self.addr}: {e}") from None
        r = Response(self, conn, resp, what)
        if resp.status not in expect:
            try:
                raw = r.read(_MAX_ERROR)
            except SietchError:
                raw = b""
            finally:
                r.close()
            raise error_from_response(resp.status, raw, what)
        return r

    def call(self, method: str, path: str, *, expect: int = 200, **kw: Any) -> Any:
        """A request whose answer is JSON (None for an empty answer)."""
        with self.request(method, path, expect=(expect,), **kw) as r:
            if expect == 204:
                return None
            return r.json()

    # -- calls that belong to no sandbox --------------------------------

    def health(self) -> Health:
        """Whether sietchd is up; it needs no token."""
        return _codec.decode(Health, self.call("GET", "/v1/health", auth=False))

    def metrics(self) -> str:
        """sietchd's metrics in the Prometheus text format."""
        with self.request("GET", "/metrics") as r:
            return r.read_bounded(_MAX_TEXT).decode("utf-8", "replace")

    def openapi(self) -> str:
        """The OpenAPI 3 document (YAML) describing the API."""
        with self.request("GET", "/v1/openapi.yaml") as r:
            return r.read_bounded(_MAX_TEXT).decode("utf-8", "replace")

    def images(self) -> list[Image]:
        """The images sandboxes start from."""
        return _decode_list(Image, self.call("GET", "/v1/images"), "images")

    def build_image(
        self,
        name: str,
        context: str | os.PathLike[str] | bytes | IO[bytes],
        *,
        dockerfile: str | None = None,
        target: str | None = None,
        build_args: dict[str, str] | None = None,
        no_cache: bool = False,
        on_log: Callable[[str], None] | None = None,
    ) -> Image:
        """Build image ``name`` from a Dockerfile in sietchd: RUN steps run
        in a build sandbox, each step's result is cached. ``context`` is the
        build context: a directory (sent as a tar archive, built in memory;
        sietchd applies its .dockerignore) or a tar archive already made.
        ``dockerfile`` is the Dockerfile's path inside it (default
        Dockerfile). ``on_log`` hears the build's output as it comes. A
        build refused or failed (a RUN's exit status, with its line) raises
        the API error."""
        if isinstance(context, (str, os.PathLike)):
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
                for entry in sorted(os.listdir(context)):
                    tf.add(os.path.join(context, entry), arcname=entry)
            body: Body = buf.getvalue()
        else:
            body = context
        query: list[tuple[str, str]] = [("name", name)]
        if dockerfile:
            query.append(("dockerfile", dockerfile))
        if target:
            query.append(("target", target))
        if no_cache:
            query.append(("no_cache", "true"))
        for k, v in sorted((build_args or {}).items()):
            query.append(("build_arg", f"{k}={v}"))
        resp = self.request(
            "POST",
            "/v1/images?" + urllib.parse.urlencode(query),
            body=body,
            headers={"Content-Type": "application/x-tar", "Accept": "application/x-ndjson"},
            timeout=None,
        )
        with resp:
            for doc in resp.lines(_MAX_BUILD_LINE):
                ev = _codec.decode(ImageBuildEvent, doc)
                if ev.log and on_log is not None:
                    on_log(ev.log)
                if ev.error is not None:
                    cls = ERROR_CLASSES.get(ev.error.code, APIError)
                    raise cls(ev.error.message, status=200, code=ev.error.code, retry=bool(ev.error.retry))
                if ev.image is not None:
                    return ev.image
        raise ProtocolError("POST /v1/images: the stream ended before the image or an error (sietchd restarted?)")

    def snapshots(self) -> list[Snapshot]:
        """Every snapshot, oldest first, with what depends on each."""
        return _decode_list(Snapshot, self.call("GET", "/v1/snapshots"), "snapshots")

    def get_snapshot(self, snapshot_id: str) -> Snapshot:
        return _codec.decode(Snapshot, self.call("GET", "/v1/snapshots/" + _seg(snapshot_id)))

    def delete_snapshot(self, snapshot: str | Snapshot) -> None:
        """Remove a snapshot; InUseError names what still needs it."""
        sid = snapshot.id if isinstance(snapshot, Snapshot) else snapshot
        self.call("DELETE", "/v1/snapshots/" + _seg(sid), expect=204)


def _parse_addr(addr: str) -> tuple[str, str, int | None, str | None]:
    """(scheme, host, port, unix socket path) of a sietchd address."""
    if addr.startswith("tcp://"):
        addr = "http://" + addr[len("tcp://") :]  # sietchd --listen spells TCP this way
    if addr.startswith(("http://", "https://")):
        u = urllib.parse.urlsplit(addr)
        if not u.hostname:
            raise ConfigurationError(f"sietchd address {addr!r}: want http://host:port, tcp://host:port, unix:///path or /path")
        return u.scheme, u.hostname, u.port, None
    if addr.startswith(("unix://", "/")):
        path = addr.removeprefix("unix://")
        if not path.startswith("/"):
            raise ConfigurationError(
                f"sietchd address {addr!r}: a unix socket needs an absolute path (unix:///var/lib/sietch/sietchd.sock)"
            )
        return "http", "sietchd", None, path
    raise ConfigurationError(f"sietchd address {addr!r}: want unix:///path, /path, http://host:port or tcp://host:port")


def _seg(s: str) -> str:
    """One path segment, escaped."""
    return urllib.parse.quote(s, safe="")


def _decode_list(cls: type[_codec.T], doc: Any, key: str) -> list[_codec.T]:
    if not isinstance(doc, dict) or not isinstance(doc.get(key), list):
        raise ProtocolError(f"want an object with the array {key!r}, got {str(doc)[:80]}")
    return [_codec.decode(cls, v, f"{key}[{i}]") for i, v in enumerate(doc[key])]


_default: Client | None = None
_default_lock = threading.Lock()


def default_client() -> Client:
    """The Client built from the environment at first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Client()
        return _default


def resolve(client: Client | None) -> Client:
    return client if client is not None else default_client()
