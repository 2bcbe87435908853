"""Python SDK for sietch: KVM microVM sandboxes (sietchd's HTTP API).

    from sietch import Sandbox

    with Sandbox.create(template="default") as sb:
        print(sb.exec("uname", "-a").stdout)
"""

from ._stream import EventStream, RemoteFile
from .client import Client, default_client
from .code import Contexts, Execution, Result
from .commands import CommandResult, Process, Processes
from .errors import (
    ERROR_CLASSES,
    AgentUnavailableError,
    APIError,
    BadRequestError,
    BodyTooLargeError,
    ConfigurationError,
    ConflictError,
    InternalError,
    InUseError,
    InvalidJSONError,
    LimitExceededError,
    MethodNotAllowedError,
    NotFoundError,
    ProtocolError,
    SietchConnectionError,
    SietchError,
    SietchTimeoutError,
    StreamClosedError,
    UnauthorizedError,
    UnknownFieldError,
    WrongStateError,
)
from .execstream import ExecSession
from .files import Files
from .models import (
    VNC,
    Browser,
    Context,
    ExecEvent,
    ExecExit,
    FileInfo,
    Health,
    Image,
    Limits,
    Network,
    NetworkSpec,
    Port,
    ProcessInfo,
    RunEnd,
    RunError,
    RunEvent,
    SandboxInfo,
    SandboxStats,
    Snapshot,
    TarResult,
    TemplateInfo,
    TTYSize,
    WatchEvent,
)
from .operations import OPERATIONS
from .sandbox import Ports, Sandbox
from .templates import Template, TemplateBuildError

__version__ = "0.1.0"

__all__ = [
    "APIError",
    "AgentUnavailableError",
    "BadRequestError",
    "Browser",
    "BodyTooLargeError",
    "Client",
    "CommandResult",
    "ConfigurationError",
    "ConflictError",
    "Context",
    "Contexts",
    "ERROR_CLASSES",
    "EventStream",
    "ExecEvent",
    "ExecSession",
    "ExecExit",
    "Execution",
    "FileInfo",
    "Files",
    "Health",
    "Image",
    "InUseError",
    "InternalError",
    "InvalidJSONError",
    "LimitExceededError",
    "Limits",
    "MethodNotAllowedError",
    "NotFoundError",
    "OPERATIONS",
    "Port",
    "Ports",
    "Process",
    "ProcessInfo",
    "Processes",
    "ProtocolError",
    "Network",
    "NetworkSpec",
    "RemoteFile",
    "Result",
    "RunEnd",
    "RunError",
    "RunEvent",
    "Sandbox",
    "SandboxInfo",
    "SietchConnectionError",
    "SietchError",
    "SietchTimeoutError",
    "SandboxStats",
    "Snapshot",
    "StreamClosedError",
    "TTYSize",
    "TarResult",
    "Template",
    "TemplateBuildError",
    "VNC",
    "TemplateInfo",
    "UnauthorizedError",
    "UnknownFieldError",
    "WatchEvent",
    "WrongStateError",
    "default_client",
]
