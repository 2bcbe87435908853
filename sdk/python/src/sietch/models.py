"""The JSON types of sietchd's API (components.schemas in api/openapi.yaml),
as dataclasses. Field names are the schema's property names; a test keeps
them equal. Optional properties default to None."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

#: A sandbox's lifecycle state (schema State).
State = Literal["creating", "running", "paused", "snapshotting", "suspended", "stopped", "failed"]


@dataclass
class Limits:
    """One sandbox's resources; None takes the server's default."""

    cpus: int | None = None
    memory_mib: int | None = None
    disk_mib: int | None = None
    timeout_s: int | None = None
    on_timeout: str | None = None  # "stop", "snapshot" or "pause" (to disk)


@dataclass
class NetworkSpec:
    """A sandbox's network as a create or a change asks for it: an
    interface of its own (isolated while ``enabled`` is False) and an
    egress policy. ``allow`` and ``deny`` hold IPv4 CIDRs, addresses or
    domain names (a name covers its subdomains); an allowed entry wins
    over a denied one, and ``internet`` (default on) decides the rest."""

    enabled: bool
    internet: bool | None = None
    allow: list[str] | None = None
    deny: list[str] | None = None


@dataclass
class Network:
    """A sandbox's network interface, address and egress policy."""

    enabled: bool
    internet: bool
    address: str  # the guest's, with prefix length
    gateway: str  # the host side: its route out and its DNS server
    interface: str  # the host's TAP
    allow: list[str] | None = None
    deny: list[str] | None = None


@dataclass
class CreateRequest:
    template: str | None = None
    image: str | None = None
    snapshot: str | None = None
    limits: Limits | None = None
    labels: dict[str, str] | None = None
    env: dict[str, str] | None = None
    network: NetworkSpec | None = None


@dataclass
class Port:
    guest_port: int
    host_addr: str
    host_port: int


@dataclass
class SandboxInfo:
    """A sandbox as sietchd describes it (schema Sandbox)."""

    id: str
    state: str
    limits: Limits
    created_at: datetime
    agent: bool
    reason: str | None = None
    image: str | None = None
    template: str | None = None
    snapshot: str | None = None
    labels: dict[str, str] | None = None
    vmm_pid: int | None = None
    ports: list[Port] | None = None
    network: Network | None = None


@dataclass
class SnapshotRequest:
    kind: str | None = None  # "full" (default) or "diff"


@dataclass
class PauseRequest:
    to_disk: bool | None = None


@dataclass
class Snapshot:
    """A checkpoint of a sandbox; Sandbox.restore starts a new one from it."""

    id: str
    sandbox_id: str
    kind: str
    size_bytes: int
    created_at: datetime
    base: str | None = None
    role: str | None = None
    template: str | None = None
    dependents: list[str] | None = None


@dataclass
class SandboxStats:
    """A running sandbox's resource use (its vmm and device processes
    together, from its cgroup) and its limits; counters count from its
    vmm's start. ``None`` limits: none; ``None`` net counters: no TAP."""

    cpu_user_s: float
    cpu_system_s: float
    cpu_periods: int
    cpu_throttled_periods: int
    cpu_throttled_s: float
    memory_bytes: int
    memory_oom_kills: int
    pids: int
    disk_read_bytes: int
    disk_write_bytes: int
    cgroup: str | None = None
    cpu_limit: float | None = None
    memory_peak_bytes: int | None = None
    memory_limit_bytes: int | None = None
    pids_limit: int | None = None
    net_rx_bytes: int | None = None
    net_tx_bytes: int | None = None


@dataclass
class TemplateRequest:
    name: str
    image: str | None = None
    start_cmd: str | None = None
    ready_port: int | None = None
    ready_cmd: str | None = None
    ready_timeout_s: int | None = None
    contexts: list[str] | None = None
    limits: Limits | None = None


@dataclass
class TemplateInfo:
    """A template as sietchd describes it (schema Template)."""

    name: str
    image: str
    limits: Limits
    state: str  # building, ready or failed
    size_bytes: int
    created_at: datetime
    sandboxes: int
    start_cmd: str | None = None
    ready_port: int | None = None
    ready_cmd: str | None = None
    contexts: list[str] | None = None
    step: str | None = None
    reason: str | None = None
    snapshot: str | None = None
    build_s: float | None = None
    stale: bool | None = None  # its image changed since the build


@dataclass
class ForkRequest:
    count: int
    snapshot: str | None = None


@dataclass
class TTYSize:
    rows: int
    cols: int


@dataclass
class ExecRequest:
    cmd: str
    args: list[str] | None = None
    env: dict[str, str] | None = None
    cwd: str | None = None
    stdin: bytes | None = None
    timeout_ms: int | None = None
    tty: TTYSize | None = None
    detach: bool | None = None


@dataclass
class Started:
    id: str
    pid: int


@dataclass
class ExecExit:
    """How a command ended: code is -1 when a signal ended it."""

    code: int
    signal: str | None = None
    timed_out: bool | None = None


@dataclass
class ProcessInfo:
    """A process in a sandbox (schema Process)."""

    id: str
    pid: int
    cmd: str
    state: str  # running or exited
    output_bytes: int
    started_at: datetime
    args: list[str] | None = None
    tty: bool | None = None
    detached: bool | None = None
    exit: ExecExit | None = None
    ended_at: datetime | None = None


@dataclass
class SignalRequest:
    signal: str


@dataclass
class ExecEvent:
    """One event of a command's output stream: a chunk of stdout or stderr
    (bytes), or the exit, which comes last."""

    stdout: bytes | None = None
    stderr: bytes | None = None
    exit: ExecExit | None = None
    dropped: int | None = None


@dataclass
class ContextRequest:
    id: str | None = None
    language: str | None = None
    cwd: str | None = None
    env: dict[str, str] | None = None


@dataclass
class Context:
    """A code context: a python, node or bash interpreter keeping its state."""

    id: str
    language: str
    pid: int
    state: str  # idle, running or dead
    runs: int
    created_at: datetime
    cwd: str | None = None
    reason: str | None = None


@dataclass
class RunRequest:
    code: str
    timeout_ms: int | None = None


@dataclass
class RunError:
    """An exception the code raised (name ContextDied: the interpreter exited)."""

    name: str
    value: str
    traceback: str | None = None


@dataclass
class RunEnd:
    status: str  # ok, error, interrupted or timeout
    execution_count: int
    duration_ms: int
    exit_code: int | None = None


@dataclass
class RunEvent:
    """One event of a run's stream; exactly one field is set. result maps
    MIME types to values (image/png in base64)."""

    stdout: str | None = None
    stderr: str | None = None
    result: dict[str, str] | None = None
    error: RunError | None = None
    end: RunEnd | None = None


@dataclass
class PortRequest:
    guest_port: int
    host_port: int | None = None
    host_addr: str | None = None


@dataclass
class DesktopAction:
    """One input action: move (x, y); click (x, y, button 1-3, count
    1-3); drag (x, y to x2, y2); scroll (dy, negative up); type (text);
    key (keys such as "ctrl+l")."""

    type: str
    x: int | None = None
    y: int | None = None
    x2: int | None = None
    y2: int | None = None
    button: int | None = None
    count: int | None = None
    dy: int | None = None
    text: str | None = None
    keys: str | None = None


@dataclass
class DesktopInput:
    actions: list[DesktopAction]
    display: str | None = None  # default ":1"


@dataclass
class DesktopState:
    width: int
    height: int
    cursor_x: int
    cursor_y: int


@dataclass
class VNCRequest:
    display: str | None = None  # default ":1"
    host_addr: str | None = None  # default 127.0.0.1
    host_port: int | None = None  # 0 or None: any free port, or the forward made before


@dataclass
class VNC:
    """How to view a sandbox's desktop: a VNC server at host_addr:host_port
    with password, made for this call (the one before stops working), and
    noVNC's page at web_url when the image has noVNC."""

    display: str
    password: str
    host_addr: str
    host_port: int
    web_url: str | None = None


@dataclass
class BrowserRequest:
    url: str
    display: str | None = None  # default ":1"


@dataclass
class Browser:
    """started: the browser was not running and now starts with the URL
    (its first window takes minutes where guest kernel mode is emulated);
    False: the URL opened in a new tab. devtools_port is the guest port of
    the Chrome DevTools protocol (forward it with ports.forward)."""

    started: bool
    devtools_port: int
    pid: int | None = None


@dataclass
class ImageConfig:
    """A built image's runtime config: ENV, WORKDIR and USER are every
    exec's defaults in its sandboxes; ENTRYPOINT and CMD a template's start
    command; EXPOSE the ports it suggests forwarding."""

    env: list[str] | None = None  # K=V
    workdir: str | None = None
    user: str | None = None
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    exposed_ports: list[str] | None = None  # 8000/tcp
    labels: dict[str, str] | None = None


@dataclass
class Image:
    name: str
    kind: str  # linux or testguest
    size_bytes: int
    created_at: datetime
    source: str | None = None  # "dockerfile" for an image sietchd built
    config: ImageConfig | None = None


@dataclass
class ImageBuildEvent:
    """One line of a build's stream: output, then the image or the error."""

    log: str | None = None
    image: Image | None = None
    error: ErrorInfo | None = None


@dataclass
class Health:
    status: str
    version: str
    sandboxes: int
    kvm: str


@dataclass
class ErrorInfo:
    """The error of an ErrorBody (schema Error)."""

    code: str
    message: str
    retry: bool | None = None


@dataclass
class ErrorBody:
    error: ErrorInfo


@dataclass
class FileInfo:
    name: str
    type: str  # file, dir, symlink or other
    size: int
    mode: str  # octal, such as "0644"
    mtime: datetime
    target: str | None = None


@dataclass
class FileList:
    entries: list[FileInfo]


@dataclass
class MkdirRequest:
    path: str
    parents: bool | None = None
    mode: str | None = None


@dataclass
class RenameRequest:
    from_: str = field(metadata={"json": "from"})
    to: str


@dataclass
class TarResult:
    files: int
    dirs: int
    symlinks: int
    bytes: int


@dataclass
class WatchEvent:
    """A change in a watched directory: create, write, remove, rename
    (the old name), chmod, or overflow (events were lost: rescan)."""

    type: str
    time: datetime
    path: str | None = None
    is_dir: bool | None = None


#: The dataclass for each object schema of api/openapi.yaml.
SCHEMAS: dict[str, type] = {
    "Limits": Limits,
    "CreateRequest": CreateRequest,
    "Sandbox": SandboxInfo,
    "SnapshotRequest": SnapshotRequest,
    "PauseRequest": PauseRequest,
    "Snapshot": Snapshot,
    "SandboxStats": SandboxStats,
    "NetworkSpec": NetworkSpec,
    "Network": Network,
    "TemplateRequest": TemplateRequest,
    "Template": TemplateInfo,
    "ForkRequest": ForkRequest,
    "ExecRequest": ExecRequest,
    "TTYSize": TTYSize,
    "Started": Started,
    "Process": ProcessInfo,
    "SignalRequest": SignalRequest,
    "ExecEvent": ExecEvent,
    "ExecExit": ExecExit,
    "ContextRequest": ContextRequest,
    "Context": Context,
    "RunRequest": RunRequest,
    "RunEvent": RunEvent,
    "RunError": RunError,
    "RunEnd": RunEnd,
    "PortRequest": PortRequest,
    "Port": Port,
    "Image": Image,
    "ImageConfig": ImageConfig,
    "ImageBuildEvent": ImageBuildEvent,
    "DesktopAction": DesktopAction,
    "DesktopInput": DesktopInput,
    "DesktopState": DesktopState,
    "VNCRequest": VNCRequest,
    "VNC": VNC,
    "BrowserRequest": BrowserRequest,
    "Browser": Browser,
    "Health": Health,
    "Error": ErrorInfo,
    "ErrorBody": ErrorBody,
    "FileInfo": FileInfo,
    "FileList": FileList,
    "MkdirRequest": MkdirRequest,
    "RenameRequest": RenameRequest,
    "TarResult": TarResult,
    "WatchEvent": WatchEvent,
}
