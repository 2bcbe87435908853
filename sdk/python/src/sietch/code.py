"""Code contexts: long-lived python, node or bash interpreters in a sandbox,
and the results of code run in them."""

from __future__ import annotations

import base64
import binascii
import builtins
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import _codec
from ._stream import EventStream
from .client import DEFAULT, _decode_list, _seg
from .commands import stream_timeout
from .errors import ProtocolError
from .models import Context, ContextRequest, RunEnd, RunError, RunEvent, RunRequest

if TYPE_CHECKING:
    from .sandbox import Sandbox

#: The context each language has without a create.
DEFAULT_CONTEXTS = {"python": "default", "node": "default-node", "bash": "default-bash"}

_MAX_RUN_EVENT = 64 << 20  # a result may carry a large image


@dataclass
class Result:
    """A value the code produced (its last expression, or a figure it
    displayed) in every format it offers, by MIME type."""

    data: dict[str, str]

    @property
    def formats(self) -> list[str]:
        return sorted(self.data)

    @property
    def text(self) -> str | None:
        return self.data.get("text/plain")

    @property
    def html(self) -> str | None:
        return self.data.get("text/html")

    @property
    def markdown(self) -> str | None:
        return self.data.get("text/markdown")

    @property
    def svg(self) -> str | None:
        return self.data.get("image/svg+xml")

    @property
    def png(self) -> bytes | None:
        """The PNG image's bytes."""
        return self._b64("image/png")

    @property
    def json(self) -> Any:
        raw = self.data.get("application/json")
        if raw is None:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise ProtocolError(f"result: application/json is not JSON: {raw[:80]!r}") from None

    def _b64(self, mime: str) -> bytes | None:
        raw = self.data.get(mime)
        if raw is None:
            return None
        try:
            return base64.b64decode(raw, validate=True)
        except binascii.Error:
            raise ProtocolError(f"result: {mime} is not base64") from None


@dataclass
class Execution:
    """What a run of code produced. An exception in the code is no error
    of the call: it is in ``error`` and ``status`` is "error"."""

    status: str  # ok, error, interrupted or timeout
    execution_count: int
    duration_ms: int
    stdout: str = ""
    stderr: str = ""
    results: list[Result] = field(default_factory=list)
    error: RunError | None = None
    exit_code: int | None = None  # bash: the code's exit status

    @property
    def text(self) -> str | None:
        """The text of the last result (the value of the last expression)."""
        for r in reversed(self.results):
            if r.text is not None:
                return r.text
        return None


def context_id(context: str | Context | None, language: str | None) -> str:
    if context is not None:
        return context.id if isinstance(context, Context) else context
    lang = language or "python"
    try:
        return DEFAULT_CONTEXTS[lang]
    except KeyError:
        raise ValueError(f"language {lang!r}: want one of {', '.join(DEFAULT_CONTEXTS)}") from None


def run_stream(sb: Sandbox, code: str, ctx: str, timeout: float | None, request_timeout: Any) -> EventStream[RunEvent]:
    resp = sb._client.request(
        "POST",
        f"/v1/sandboxes/{_seg(sb.id)}/contexts/{_seg(ctx)}/run",
        json_body=RunRequest(code=code, timeout_ms=None if timeout is None else max(1, int(timeout * 1000))),
        headers={"Accept": "application/x-ndjson"},
        timeout=stream_timeout(timeout, request_timeout),
    )
    return EventStream(resp, RunEvent, max_line=_MAX_RUN_EVENT, last=lambda e: e.end is not None, cut_short="its end")


def collect(events: EventStream[RunEvent], on_event: Callable[[RunEvent], None] | None) -> Execution:
    out: list[str] = []
    err: list[str] = []
    results: list[Result] = []
    error: RunError | None = None
    end: RunEnd | None = None
    with events:
        for ev in events:
            if on_event is not None:
                on_event(ev)
            if ev.stdout is not None:
                out.append(ev.stdout)
            if ev.stderr is not None:
                err.append(ev.stderr)
            if ev.result is not None:
                results.append(Result(ev.result))
            if ev.error is not None:
                error = ev.error
            if ev.end is not None:
                end = ev.end
    assert end is not None  # the stream raises when it ends without one
    return Execution(
        status=end.status,
        execution_count=end.execution_count,
        duration_ms=end.duration_ms,
        exit_code=end.exit_code,
        stdout="".join(out),
        stderr="".join(err),
        results=results,
        error=error,
    )


class Contexts:
    """A sandbox's code contexts. The default ones ("default" for python,
    "default-node", "default-bash") need no create."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._sb = sandbox

    def _path(self, ctx: str | Context = "", rest: str = "") -> str:
        p = f"/v1/sandboxes/{_seg(self._sb.id)}/contexts"
        if ctx:
            p += "/" + _seg(ctx.id if isinstance(ctx, Context) else ctx)
        return p + rest

    def create(
        self,
        language: str = "python",
        *,
        id: str | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
    ) -> Context:
        """Start a context; returns once its interpreter is ready."""
        req = ContextRequest(id=id, language=language, cwd=cwd, env=env or None)
        return _codec.decode(Context, self._sb._client.call("POST", self._path(), json_body=req, expect=201, long=True))

    def list(self) -> builtins.list[Context]:
        return _decode_list(Context, self._sb._client.call("GET", self._path()), "contexts")

    def delete(self, context: str | Context) -> None:
        """End a context and its interpreter."""
        self._sb._client.call("DELETE", self._path(context), expect=204)

    def interrupt(self, context: str | Context) -> None:
        """Interrupt the code running in a context (SIGINT); it lives on."""
        self._sb._client.call("POST", self._path(context, "/interrupt"), expect=204)

    def restart(self, context: str | Context) -> Context:
        """Start the context's interpreter anew; its state is lost."""
        doc = self._sb._client.call("POST", self._path(context, "/restart"), long=True, timeout=DEFAULT)
        return _codec.decode(Context, doc)
