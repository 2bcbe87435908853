"""Commands in a sandbox: run one to its exit, stream its output, or start
it in the background and manage it as a process."""

from __future__ import annotations

import builtins
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import _codec
from ._stream import EventStream
from .client import DEFAULT, Client, _decode_list, _seg
from .models import ExecEvent, ExecExit, ExecRequest, ProcessInfo, SignalRequest, Started, TTYSize

if TYPE_CHECKING:
    from .sandbox import Sandbox

_MAX_EVENT = 16 << 20  # one ExecEvent line: a base64 chunk of output
_SLACK_S = 30.0  # beyond a command's own timeout, for the answer to come


@dataclass
class CommandResult:
    """How a command ended, with all its output."""

    exit_code: int  # -1 when a signal ended it
    stdout_bytes: bytes
    stderr_bytes: bytes
    signal: str | None = None
    timed_out: bool = False

    @property
    def stdout(self) -> str:
        return self.stdout_bytes.decode("utf-8", "replace")

    @property
    def stderr(self) -> str:
        return self.stderr_bytes.decode("utf-8", "replace")

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


def exec_request(
    cmd: str,
    args: tuple[str, ...],
    env: dict[str, str] | None,
    cwd: str | None,
    timeout: float | None,
    stdin: bytes | str | None,
    tty: TTYSize | None = None,
    detach: bool | None = None,
) -> ExecRequest:
    if isinstance(stdin, str):
        stdin = stdin.encode()
    argv = [str(a) for a in args]
    if not argv:
        # A command alone is a shell line, as in the TypeScript SDK:
        # exec("ls -l /tmp | wc -l"). With arguments it is the program.
        cmd, argv = "sh", ["-c", cmd]
    return ExecRequest(
        cmd=cmd,
        args=argv,
        env=env or None,
        cwd=cwd,
        stdin=stdin or None,
        timeout_ms=_ms(timeout),
        tty=tty,
        detach=detach,
    )


def _ms(seconds: float | None) -> int | None:
    if seconds is None:
        return None
    if seconds <= 0:
        raise ValueError("a timeout must be positive")
    return max(1, int(seconds * 1000))


def stream_timeout(timeout: float | None, request_timeout: Any) -> Any:
    """The socket timeout of a streamed call: the caller's, else the
    command's own timeout plus slack, else none (output may pause)."""
    if request_timeout is not DEFAULT:
        return request_timeout
    return None if timeout is None else timeout + _SLACK_S


def exec_stream(client: Client, sandbox_id: str, req: ExecRequest, request_timeout: Any) -> EventStream[ExecEvent]:
    resp = client.request(
        "POST",
        f"/v1/sandboxes/{_seg(sandbox_id)}/exec",
        json_body=req,
        headers={"Accept": "application/x-ndjson"},
        timeout=stream_timeout(req.timeout_ms / 1000 if req.timeout_ms else None, request_timeout),
    )
    return EventStream(resp, ExecEvent, max_line=_MAX_EVENT, last=lambda e: e.exit is not None, cut_short="the exit status")


def collect(
    events: EventStream[ExecEvent],
    on_stdout: Callable[[bytes], None] | None,
    on_stderr: Callable[[bytes], None] | None,
) -> CommandResult:
    out: list[bytes] = []
    err: list[bytes] = []
    exit: ExecExit | None = None
    with events:
        for ev in events:
            if ev.stdout:
                out.append(ev.stdout)
                if on_stdout:
                    on_stdout(ev.stdout)
            if ev.stderr:
                err.append(ev.stderr)
                if on_stderr:
                    on_stderr(ev.stderr)
            if ev.exit is not None:
                exit = ev.exit
    assert exit is not None  # the stream raises when it ends without one
    return CommandResult(
        exit_code=exit.code,
        stdout_bytes=b"".join(out),
        stderr_bytes=b"".join(err),
        signal=exit.signal,
        timed_out=bool(exit.timed_out),
    )


class Process:
    """A command started in the background: it runs on after the call,
    its output (the last 256 KiB) is kept, and it stays listed until
    deleted."""

    def __init__(self, processes: Processes, id: str, pid: int) -> None:
        self._processes = processes
        self.id = id
        self.pid = pid

    def __repr__(self) -> str:
        return f"Process(id={self.id!r}, pid={self.pid})"

    def info(self) -> ProcessInfo:
        return self._processes.get(self.id)

    def wait(self, timeout: float | None = None) -> ProcessInfo:
        return self._processes.wait(self.id, timeout=timeout)

    def output(self, offset: int = 0, follow: bool = False) -> EventStream[ExecEvent]:
        return self._processes.output(self.id, offset=offset, follow=follow)

    def signal(self, signal: str) -> None:
        self._processes.signal(self.id, signal)

    def kill(self) -> None:
        """Kill it if it runs (SIGKILL to its group) and forget it."""
        self._processes.delete(self.id)


class Processes:
    """A sandbox's processes: running commands, and background ones kept
    after they exit."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._sb = sandbox

    def _path(self, proc: str = "", rest: str = "") -> str:
        p = f"/v1/sandboxes/{_seg(self._sb.id)}/processes"
        return p + ("/" + _seg(proc) if proc else "") + rest

    def start(
        self,
        cmd: str,
        *args: str,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        timeout: float | None = None,
        tty: TTYSize | None = None,
    ) -> Process:
        """Start ``cmd`` in the background (``tty``: on a terminal of that
        size); returns once it runs."""
        req = exec_request(cmd, args, env, cwd, timeout, None, tty=tty, detach=True)
        doc = self._sb._client.call("POST", f"/v1/sandboxes/{_seg(self._sb.id)}/exec", json_body=req, expect=201)
        st = _codec.decode(Started, doc)
        return Process(self, st.id, st.pid)

    def list(self) -> builtins.list[ProcessInfo]:
        return _decode_list(ProcessInfo, self._sb._client.call("GET", self._path()), "processes")

    def get(self, proc: str) -> ProcessInfo:
        return _codec.decode(ProcessInfo, self._sb._client.call("GET", self._path(proc)))

    def wait(self, proc: str, timeout: float | None = None) -> ProcessInfo:
        """Wait for the process to exit (at most ``timeout`` seconds:
        then SietchTimeoutError) and describe it."""
        doc = self._sb._client.call("POST", self._path(proc, "/wait"), timeout=timeout)
        return _codec.decode(ProcessInfo, doc)

    def signal(self, proc: str, signal: str) -> None:
        """Send a signal ("SIGTERM", "TERM" or "15") to the process's group."""
        self._sb._client.call("POST", self._path(proc, "/signal"), json_body=SignalRequest(signal=signal), expect=204)

    def delete(self, proc: str) -> None:
        """Kill the process if it runs and forget it."""
        self._sb._client.call("DELETE", self._path(proc), expect=204)

    def output(self, proc: str, offset: int = 0, follow: bool = False) -> EventStream[ExecEvent]:
        """A background process's output from byte ``offset`` as events
        (``dropped``: bytes the bound lost); with ``follow``, until it
        exits. The last event has ``exit`` once it has exited."""
        resp = self._sb._client.request(
            "GET",
            self._path(proc, "/output"),
            query={"offset": str(offset), "follow": "true" if follow else "false"},
            headers={"Accept": "application/x-ndjson"},
            timeout=None if follow else DEFAULT,
        )
        return EventStream(resp, ExecEvent, max_line=_MAX_EVENT, last=None)
