// Errors: one class per stable error code of sietchd's API (the Error
// schema's code enum in api/openapi.yaml), plus the client-side failures
// (cannot connect, a malformed or cut-short answer).

/** Any failure of a call to sietchd. */
export class SietchError extends Error {
  /** HTTP status; 0 when no answer came (connection failure). */
  readonly status: number;
  /** Stable code: one of the API's codes, or "connection" / "protocol". */
  readonly code: string;
  /** Trying again later may work (for example the guest agent is still starting). */
  readonly retry: boolean;

  constructor(message: string, opts: { status?: number; code?: string; retry?: boolean; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    this.status = opts.status ?? 0;
    this.code = opts.code ?? "internal";
    this.retry = opts.retry ?? false;
  }
}

/** sietchd could not be reached; the message says where the SDK looked and what to check. */
export class ConnectionError extends SietchError {
  constructor(message: string, cause?: unknown) {
    super(message, { code: "connection", retry: true, cause });
  }
}

/** sietchd answered something the API does not allow: bad JSON, a stream cut short. */
export class ProtocolError extends SietchError {
  constructor(message: string, status = 0) {
    super(message, { status, code: "protocol" });
  }
}

// The API's error codes, each with its class. Subclasses of BadRequestError
// refine it, so `instanceof BadRequestError` catches every malformed request.
export class BadRequestError extends SietchError {}
export class InvalidJSONError extends BadRequestError {}
export class UnknownFieldError extends BadRequestError {}
export class UnauthorizedError extends SietchError {}
export class NotFoundError extends SietchError {}
export class MethodNotAllowedError extends SietchError {}
export class WrongStateError extends SietchError {}
export class InUseError extends SietchError {}
export class ConflictError extends SietchError {}
export class LimitExceededError extends SietchError {}
export class AgentUnavailableError extends SietchError {}
export class BodyTooLargeError extends SietchError {}
export class InternalError extends SietchError {}

type ErrorClass = new (message: string, opts: { status?: number; code?: string; retry?: boolean }) => SietchError;

/** The class of each stable code of the API. */
export const ERROR_CLASSES: Readonly<Record<string, ErrorClass>> = Object.freeze({
  bad_request: BadRequestError,
  invalid_json: InvalidJSONError,
  unknown_field: UnknownFieldError,
  unauthorized: UnauthorizedError,
  not_found: NotFoundError,
  method_not_allowed: MethodNotAllowedError,
  wrong_state: WrongStateError,
  in_use: InUseError,
  conflict: ConflictError,
  limit_exceeded: LimitExceededError,
  agent_unavailable: AgentUnavailableError,
  body_too_large: BodyTooLargeError,
  internal: InternalError,
});

/** The code a bare status stands for, when the body is no ErrorBody (a proxy's page, a crash). */
function codeForStatus(status: number): string {
  switch (status) {
    case 401:
    case 403:
      return "unauthorized";
    case 404:
      return "not_found";
    case 405:
      return "method_not_allowed";
    case 409:
      return "wrong_state";
    case 413:
      return "body_too_large";
    case 429:
      return "limit_exceeded";
    case 503:
      return "agent_unavailable";
  }
  return status >= 400 && status < 500 ? "bad_request" : "internal";
}

/**
 * The error for a non-2xx answer: its ErrorBody's code picks the class; a body
 * that is not an ErrorBody still gives a typed error, its code guessed from
 * the status.
 */
export function errorFromResponse(status: number, body: string, what: string): SietchError {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    parsed = undefined;
  }
  const e = (parsed as { error?: { code?: unknown; message?: unknown; retry?: unknown } } | undefined)?.error;
  if (e && typeof e.code === "string" && e.code !== "") {
    const cls = ERROR_CLASSES[e.code] ?? SietchError;
    const message = typeof e.message === "string" ? e.message : e.code;
    return new cls(`${what}: ${message}`, { status, code: e.code, retry: e.retry === true });
  }
  const code = codeForStatus(status);
  const text = body.trim().slice(0, 500) || `HTTP ${status}`;
  return new ERROR_CLASSES[code]!(`${what}: ${text}`, { status, code, retry: status === 503 });
}
