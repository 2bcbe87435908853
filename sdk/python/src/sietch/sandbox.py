"""Sandbox: one microVM, its lifecycle, and the ways into it."""

from __future__ import annotations

import builtins
from collections.abc import Callable
from typing import Any

from . import _codec
from . import code as _code
from . import commands as _commands
from ._stream import EventStream, RemoteFile
from .client import DEFAULT, Client, _decode_list, _seg, resolve
from .code import Contexts, Execution
from .commands import CommandResult, Processes
from .errors import NotFoundError
from .execstream import PROTOCOL, ExecSession
from .files import Files
from .models import (
    Browser,
    BrowserRequest,
    Context,
    CreateRequest,
    DesktopAction,
    DesktopInput,
    DesktopState,
    ExecEvent,
    ForkRequest,
    Limits,
    Network,
    NetworkSpec,
    PauseRequest,
    Port,
    PortRequest,
    RunEvent,
    SandboxInfo,
    SandboxStats,
    Snapshot,
    SnapshotRequest,
    TTYSize,
    VNC,
    VNCRequest,
)


class Ports:
    """``sb.ports``: host TCP ports forwarded to guest ports."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._sb = sandbox

    def forward(self, guest_port: int, host_port: int | None = None, host_addr: str | None = None) -> Port:
        """Listen on ``host_addr:host_port`` (default 127.0.0.1, any free
        port) and forward each connection to ``guest_port``."""
        req = PortRequest(guest_port=guest_port, host_port=host_port, host_addr=host_addr)
        doc = self._sb._client.call("POST", f"/v1/sandboxes/{_seg(self._sb.id)}/ports", json_body=req, expect=201)
        return _codec.decode(Port, doc)

    def list(self) -> builtins.list[Port]:
        return _decode_list(Port, self._sb._client.call("GET", f"/v1/sandboxes/{_seg(self._sb.id)}/ports"), "ports")

    def delete(self, port: int | Port) -> None:
        """End the forward listening on the host port, and its connections."""
        host_port = port.host_port if isinstance(port, Port) else port
        self._sb._client.call("DELETE", f"/v1/sandboxes/{_seg(self._sb.id)}/ports/{int(host_port)}", expect=204)


class Sandbox:
    """A running (or paused, suspended...) sandbox. ``with`` deletes it at
    the end of the block.

    >>> with Sandbox.create(template="sdk") as sb:
    ...     print(sb.exec("echo", "hi").stdout)
    """

    def __init__(self, info: SandboxInfo, client: Client | None = None) -> None:
        self._client = resolve(client)
        self.id = info.id
        self.last_info = info  # as of the last call that described it
        self.files = Files(self)
        self.ports = Ports(self)
        self.processes = Processes(self)
        self.contexts = Contexts(self)

    def __repr__(self) -> str:
        return f"Sandbox(id={self.id!r}, state={self.last_info.state!r})"

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.delete()
        except NotFoundError:
            pass

    def _path(self, rest: str = "") -> str:
        return f"/v1/sandboxes/{_seg(self.id)}{rest}"

    def _update(self, doc: Any) -> SandboxInfo:
        self.last_info = _codec.decode(SandboxInfo, doc)
        return self.last_info

    # -- lifecycle ----------------------------------------------------------

    @classmethod
    def create(
        cls,
        template: str | None = None,
        image: str | None = None,
        *,
        cpus: int | None = None,
        memory_mib: int | None = None,
        disk_mib: int | None = None,
        timeout_s: int | None = None,
        on_timeout: str | None = None,
        env: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
        network: NetworkSpec | bool | None = None,
        client: Client | None = None,
        request_timeout: float | None = DEFAULT,
    ) -> Sandbox:
        """Start a sandbox from a template (a warm resume; none: the
        template "default") or an image (a cold boot), and return it
        running, its agent answering. ``timeout_s`` is its lifetime,
        after which it is stopped (or ``on_timeout``: "snapshot",
        "pause" to disk). ``network``: True for network with the
        internet, a NetworkSpec for a policy, None for sietchd's
        default."""
        limits = Limits(cpus=cpus, memory_mib=memory_mib, disk_mib=disk_mib, timeout_s=timeout_s, on_timeout=on_timeout)
        if isinstance(network, bool):
            network = NetworkSpec(enabled=network)
        req = CreateRequest(template=template, image=image, env=env or None, labels=labels or None, network=network)
        return cls._create(req, limits, client, request_timeout)

    @classmethod
    def restore(
        cls,
        snapshot: Snapshot | str,
        *,
        cpus: int | None = None,
        memory_mib: int | None = None,
        disk_mib: int | None = None,
        timeout_s: int | None = None,
        on_timeout: str | None = None,
        env: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
        client: Client | None = None,
        request_timeout: float | None = DEFAULT,
    ) -> Sandbox:
        """Start a new sandbox from a snapshot, as it was when taken."""
        sid = snapshot.id if isinstance(snapshot, Snapshot) else snapshot
        limits = Limits(cpus=cpus, memory_mib=memory_mib, disk_mib=disk_mib, timeout_s=timeout_s, on_timeout=on_timeout)
        req = CreateRequest(snapshot=sid, env=env or None, labels=labels or None)
        return cls._create(req, limits, client, request_timeout)

    @classmethod
    def _create(cls, req: CreateRequest, limits: Limits, client: Client | None, request_timeout: float | None) -> Sandbox:
        if limits != Limits():
            req.limits = limits
        c = resolve(client)
        doc = c.call("POST", "/v1/sandboxes", json_body=req, expect=201, long=True, timeout=request_timeout)
        return cls(_codec.decode(SandboxInfo, doc), c)

    @classmethod
    def connect(cls, sandbox_id: str, client: Client | None = None) -> Sandbox:
        """The existing sandbox ``sandbox_id`` (NotFoundError if none)."""
        c = resolve(client)
        return cls(_codec.decode(SandboxInfo, c.call("GET", f"/v1/sandboxes/{_seg(sandbox_id)}")), c)

    @staticmethod
    def list(client: Client | None = None) -> builtins.list[SandboxInfo]:
        """Every sandbox sietchd knows, in any state, oldest first."""
        return _decode_list(SandboxInfo, resolve(client).call("GET", "/v1/sandboxes"), "sandboxes")

    def info(self) -> SandboxInfo:
        """Describe the sandbox as it is now (and update ``last_info``)."""
        return self._update(self._client.call("GET", self._path()))

    def delete(self) -> None:
        """Stop the sandbox and remove it; its snapshots stay."""
        self._client.call("DELETE", self._path(), expect=204)

    def pause(self, to_disk: bool = False, request_timeout: float | None = DEFAULT) -> SandboxInfo:
        """Pause its vCPUs; ``to_disk``: snapshot it and end its vmm,
        freeing its memory (it is then suspended until resume, or until an
        exec, file or port call restores it)."""
        req = PauseRequest(to_disk=True) if to_disk else None
        return self._update(self._client.call("POST", self._path("/pause"), json_body=req, long=True, timeout=request_timeout))

    def resume(self, request_timeout: float | None = DEFAULT) -> SandboxInfo:
        """Resume a paused sandbox, or restore a suspended one."""
        return self._update(self._client.call("POST", self._path("/resume"), long=True, timeout=request_timeout))

    def snapshot(self, kind: str = "full", request_timeout: float | None = DEFAULT) -> Snapshot:
        """Checkpoint the sandbox ("full", or "diff" against its last
        snapshot); it goes on as it was. Sandbox.restore starts new
        sandboxes from it."""
        req = SnapshotRequest(kind=kind)
        doc = self._client.call("POST", self._path("/snapshots"), json_body=req, expect=201, long=True, timeout=request_timeout)
        return _codec.decode(Snapshot, doc)

    def stats(self) -> SandboxStats:
        """Its resource use now (CPU seconds, memory, tasks, disk bytes)
        and its limits; it must be running or paused."""
        return _codec.decode(SandboxStats, self._client.call("GET", self._path("/stats")))

    def network(self) -> Network:
        """Its network interface, address and egress policy."""
        return _codec.decode(Network, self._client.call("GET", self._path("/network")))

    def set_network(
        self,
        *,
        enabled: bool = True,
        internet: bool | None = None,
        allow: builtins.list[str] | None = None,
        deny: builtins.list[str] | None = None,
    ) -> Network:
        """Replace its egress policy while it runs: new connections follow
        it at once, open ones stay. Entries are IPv4 CIDRs, addresses or
        domain names."""
        req = NetworkSpec(enabled=enabled, internet=internet, allow=allow, deny=deny)
        return _codec.decode(Network, self._client.call("PUT", self._path("/network"), json_body=req))

    def snapshots(self) -> builtins.list[Snapshot]:
        """This sandbox's snapshots, oldest first."""
        return _decode_list(Snapshot, self._client.call("GET", self._path("/snapshots")), "snapshots")

    def fork(
        self, count: int = 1, snapshot: Snapshot | str | None = None, request_timeout: float | None = DEFAULT
    ) -> builtins.list[Sandbox]:
        """Start ``count`` new sandboxes from one of this sandbox's
        snapshots (none: a full one taken now), each a copy of it."""
        sid = snapshot.id if isinstance(snapshot, Snapshot) else snapshot
        req = ForkRequest(count=count, snapshot=sid)
        doc = self._client.call("POST", self._path("/fork"), json_body=req, expect=201, long=True, timeout=request_timeout)
        return [Sandbox(info, self._client) for info in _decode_list(SandboxInfo, doc, "sandboxes")]

    # -- the desktop (sandboxes that run an X server) --------------------

    def desktop(self, display: str | None = None) -> DesktopState:
        """The X display's screen size and pointer (display default :1)."""
        query = {"display": display} if display else None
        return _codec.decode(DesktopState, self._client.call("GET", self._path("/desktop"), query=query))

    def screenshot(
        self, region: tuple[int, int, int, int] | None = None, display: str | None = None, scale: float | None = None
    ) -> bytes:
        """A PNG of the screen, or of ``region`` (x, y, width, height),
        shrunk by ``scale`` (0.05 to 1; 0.5 halves each side)."""
        query: dict[str, str] = {}
        if display:
            query["display"] = display
        if scale is not None and scale != 1:
            query["scale"] = repr(float(scale))
        if region is not None:
            x, y, w, h = region
            query.update({"x": str(x), "y": str(y), "w": str(w), "h": str(h)})
        with self._client.request("GET", self._path("/screenshot"), query=query or None) as r:
            return r.read_bounded(64 << 20)

    def input(self, actions: builtins.list[DesktopAction], display: str | None = None) -> DesktopState:
        """Apply mouse and keyboard actions in order; returns the display
        once they are done. The first refused action raises, naming it."""
        doc = self._client.call("POST", self._path("/input"), json_body=DesktopInput(actions=actions, display=display))
        return _codec.decode(DesktopState, doc)

    def click(self, x: int, y: int, button: int = 1, count: int = 1) -> DesktopState:
        return self.input([DesktopAction(type="click", x=x, y=y, button=button, count=count)])

    def type_text(self, text: str) -> DesktopState:
        """Type text (any Unicode) into whatever has the focus."""
        return self.input([DesktopAction(type="type", text=text)])

    def press(self, keys: str) -> DesktopState:
        """Press a key combination such as "ctrl+l" or "Return"."""
        return self.input([DesktopAction(type="key", keys=keys)])

    def scroll(self, dy: int) -> DesktopState:
        """Turn the wheel dy steps: negative up, positive down."""
        return self.input([DesktopAction(type="scroll", dy=dy)])

    def vnc(self, display: str | None = None, host_port: int | None = None, host_addr: str | None = None) -> VNC:
        """Serve the desktop over VNC with a password made now (the one
        before stops working); returns the forwarded host port, the
        password and noVNC's URL."""
        req = VNCRequest(display=display, host_port=host_port, host_addr=host_addr)
        return _codec.decode(VNC, self._client.call("POST", self._path("/vnc"), json_body=req))

    def open_url(self, url: str, display: str | None = None) -> Browser:
        """Open url in the desktop's browser, starting it if it is not
        running (then the page shows once the browser is up; a second call
        meanwhile raises ConflictError: retry)."""
        doc = self._client.call("POST", self._path("/browser"), json_body=BrowserRequest(url=url, display=display))
        return _codec.decode(Browser, doc)

    def console(self) -> str:
        """The serial console log so far."""
        with self._client.request("GET", self._path("/console")) as r:
            return r.read_bounded(32 << 20).decode("utf-8", "replace")

    def follow_console(self) -> RemoteFile:
        """The console log, then new output as it comes until the sandbox
        ends or the stream is closed; iterate it for lines (bytes)."""
        return RemoteFile(self._client.request("GET", self._path("/console"), query={"follow": "1"}, timeout=None))

    # -- commands -----------------------------------------------------------

    def exec(
        self,
        cmd: str,
        *args: str,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        timeout: float | None = None,
        stdin: bytes | str | None = None,
        on_stdout: Callable[[bytes], None] | None = None,
        on_stderr: Callable[[bytes], None] | None = None,
        request_timeout: float | None = DEFAULT,
    ) -> CommandResult:
        """Run ``cmd`` to its exit and return its output and exit code; a
        non-zero exit is no error. Alone, ``cmd`` is a shell line
        (``exec("ls /tmp | wc -l")`` runs ``sh -c``); with ``args`` it is the
        program (``exec("uname", "-r")``, no shell). ``timeout`` (seconds) kills it in the guest
        (``timed_out``); ``on_stdout``/``on_stderr`` see output as it comes."""
        req = _commands.exec_request(cmd, args, env, cwd, timeout, stdin)
        return _commands.collect(_commands.exec_stream(self._client, self.id, req, request_timeout), on_stdout, on_stderr)

    def exec_stream(
        self,
        cmd: str,
        *args: str,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        timeout: float | None = None,
        stdin: bytes | str | None = None,
        request_timeout: float | None = DEFAULT,
    ) -> EventStream[ExecEvent]:
        """Run ``cmd`` and yield its output as it comes: events with
        ``stdout`` or ``stderr`` bytes, the last with ``exit``. Closing
        the stream early hangs up."""
        req = _commands.exec_request(cmd, args, env, cwd, timeout, stdin)
        return _commands.exec_stream(self._client, self.id, req, request_timeout)

    def exec_interactive(
        self,
        cmd: str,
        *args: str,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        timeout: float | None = None,
        tty: TTYSize | tuple[int, int] | None = None,
        request_timeout: float | None = DEFAULT,
    ) -> ExecSession:
        """Start ``cmd`` with its stdio on an exec stream and return once it
        runs: write its stdin (any size), read its output as it comes,
        resize its terminal (``tty=(rows, cols)`` gives it one; stderr then
        joins stdout), signal it. Closing the session ends the command."""
        if isinstance(tty, tuple):
            tty = TTYSize(rows=tty[0], cols=tty[1])
        req = _commands.exec_request(cmd, args, env, cwd, timeout, None, tty=tty)
        resp = self._client.request(
            "POST",
            self._path("/exec"),
            json_body=req,
            headers={"Connection": "Upgrade", "Upgrade": PROTOCOL},
            expect=(101,),
            timeout=_commands.stream_timeout(timeout, request_timeout),
        )
        try:
            return ExecSession(resp)
        except BaseException:
            resp.close()
            raise

    # -- code ---------------------------------------------------------------

    def run_code(
        self,
        code: str,
        context: str | Context | None = None,
        language: str | None = None,
        timeout: float | None = None,
        on_event: Callable[[RunEvent], None] | None = None,
        request_timeout: float | None = DEFAULT,
    ) -> Execution:
        """Run ``code`` in a context (default: the language's default
        context, python's unless ``language`` says otherwise), whose state
        persists between runs. ``timeout`` (seconds) interrupts the run
        (status "timeout"); ``on_event`` sees each event as it comes."""
        ctx = _code.context_id(context, language)
        return _code.collect(_code.run_stream(self, code, ctx, timeout, request_timeout), on_event)

    def run_code_stream(
        self,
        code: str,
        context: str | Context | None = None,
        language: str | None = None,
        timeout: float | None = None,
        request_timeout: float | None = DEFAULT,
    ) -> EventStream[RunEvent]:
        """Run ``code`` and yield its events as they come, the last with
        ``end``. Closing the stream early interrupts the run."""
        return _code.run_stream(self, code, _code.context_id(context, language), timeout, request_timeout)
