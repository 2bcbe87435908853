"""Exceptions: one class per stable error code of the sietchd API, plus
the failures that happen before or after the API answers."""

from __future__ import annotations

import json
from typing import Any


class SietchError(Exception):
    """Base of every error the SDK raises.

    ``status`` is the HTTP status (0 when no answer came), ``code`` the
    API's stable error code (or one of the SDK's own: ``connection``,
    ``timeout``, ``protocol``, ``configuration``, ``stream``), ``message``
    is for people and ``retry`` says trying again later may work.
    """

    code = "unknown"

    def __init__(self, message: str, *, status: int = 0, code: str | None = None, retry: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        if code is not None:
            self.code = code
        self.retry = retry

    def __str__(self) -> str:
        s = self.message
        if self.status:
            s += f" ({self.status} {self.code})"
        if self.retry:
            s += "; try again shortly"
        return s


class APIError(SietchError):
    """sietchd answered with an ErrorBody (or a non-2xx status)."""


class BadRequestError(APIError):
    code = "bad_request"


class InvalidJSONError(BadRequestError):
    code = "invalid_json"


class UnknownFieldError(BadRequestError):
    code = "unknown_field"


class UnauthorizedError(APIError):
    code = "unauthorized"


class NotFoundError(APIError):
    code = "not_found"


class MethodNotAllowedError(APIError):
    code = "method_not_allowed"


class WrongStateError(APIError):
    code = "wrong_state"


class InUseError(APIError):
    code = "in_use"


class ConflictError(APIError):
    code = "conflict"


class LimitExceededError(APIError):
    code = "limit_exceeded"


class AgentUnavailableError(APIError):
    code = "agent_unavailable"


class BodyTooLargeError(APIError):
    code = "body_too_large"


class InternalError(APIError):
    code = "internal"


#: The exception class for each stable error code of the API.
ERROR_CLASSES: dict[str, type[APIError]] = {
    cls.code: cls
    for cls in (
        BadRequestError,
        InvalidJSONError,
        UnknownFieldError,
        UnauthorizedError,
        NotFoundError,
        MethodNotAllowedError,
        WrongStateError,
        InUseError,
        ConflictError,
        LimitExceededError,
        AgentUnavailableError,
        BodyTooLargeError,
        InternalError,
    )
}

# Codes for answers whose body is not an ErrorBody (a proxy's page, a crash).
_STATUS_CODES = {
    401: "unauthorized",
    403: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    409: "wrong_state",
    413: "body_too_large",
    429: "limit_exceeded",
    503: "agent_unavailable",
}


class SietchConnectionError(SietchError, ConnectionError):
    """sietchd could not be reached, or the connection broke."""

    code = "connection"


class SietchTimeoutError(SietchError, TimeoutError):
    """sietchd did not answer within the call's timeout."""

    code = "timeout"


class ProtocolError(SietchError):
    """sietchd's answer was not what the API document promises (bad JSON,
    a missing field, a stream cut short)."""

    code = "protocol"


class StreamClosedError(SietchError):
    """A stream was read after it was closed (perhaps by another thread,
    to cancel it)."""

    code = "closed"


class ConfigurationError(SietchError):
    """The SDK's connection settings are unusable (bad address, unreadable
    token file)."""

    code = "configuration"


def error_from_response(status: int, body: bytes, what: str) -> APIError:
    """The exception for a non-2xx answer: the class of the ErrorBody's
    code, or one guessed from the status when the body is not one."""
    try:
        doc: Any = json.loads(body)
        err = doc["error"]
        code, message = err["code"], err["message"]
        if not isinstance(code, str) or not code or not isinstance(message, str):
            raise TypeError("not an ErrorBody")
        retry = err.get("retry") is True
    except (ValueError, TypeError, KeyError):
        code = _STATUS_CODES.get(status, "bad_request" if 400 <= status < 500 else "internal")
        text = body.decode("utf-8", "replace").strip()[:500] or f"HTTP {status}"
        return ERROR_CLASSES[code](f"{what}: {text}", status=status, retry=status == 503)
    cls = ERROR_CLASSES.get(code, APIError)
    return cls(message, status=status, code=code, retry=retry)
