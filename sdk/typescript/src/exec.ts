// Commands: the request sb.exec and sb.processes send, and the ExecEvent
// stream they read back.

import type { IncomingMessage } from "node:http";
import { ProtocolError } from "./errors.js";
import { type ExecExit, decode, encode } from "./models.js";
import { ndjson } from "./ndjson.js";
import type { CallOptions } from "./client.js";

export interface ExecOptions extends CallOptions {
  /**
   * The program's arguments. Without args, cmd is a shell command line run
   * with `sh -c`; with args (even []), cmd is the program itself.
   */
  args?: string[];
  /** Added to the sandbox's environment. */
  env?: Record<string, string>;
  cwd?: string;
  /** Kill the command after this many seconds (the result then has timedOut). */
  timeoutS?: number;
  /** Fed to the command's stdin, then end of file. */
  stdin?: string | Uint8Array;
  /** Called with each chunk of stdout as it comes. */
  onStdout?: (data: Buffer) => void;
  /** Called with each chunk of stderr as it comes. */
  onStderr?: (data: Buffer) => void;
}

/** One event of a command's output stream, in the order the command produced them. */
export type ExecEvent =
  | { type: "stdout"; data: Buffer }
  | { type: "stderr"; data: Buffer }
  /** A detached process's output: bytes lost to the 256 KiB bound before what follows. */
  | { type: "dropped"; bytes: number }
  | { type: "exit"; exit: ExecExit };

/** How a command ended, with its whole output. A non-zero exit is no error. */
export interface ExecResult {
  stdout: string;
  stderr: string;
  /** -1 when a signal ended it. */
  exitCode: number;
  signal?: string;
  timedOut: boolean;
}

/** The wire ExecRequest for cmd and opts. */
export function execRequest(cmd: string, opts: ExecOptions & { detach?: boolean; tty?: { rows: number; cols: number } }): Record<string, unknown> {
  const shell = opts.args === undefined;
  return encode("ExecRequest", {
    cmd: shell ? "sh" : cmd,
    args: shell ? ["-c", cmd] : opts.args,
    env: opts.env,
    cwd: opts.cwd,
    stdin: opts.stdin === undefined ? undefined : Buffer.from(opts.stdin).toString("base64"),
    timeoutMs: opts.timeoutS === undefined ? undefined : Math.round(opts.timeoutS * 1000),
    tty: opts.tty,
    detach: opts.detach,
  });
}

const base64 = /^[A-Za-z0-9+/]*={0,2}$/;

function chunk(v: unknown, what: string, field: string): Buffer {
  if (typeof v !== "string" || v.length % 4 !== 0 || !base64.test(v)) throw new ProtocolError(`${what}: ${field} is not base64`);
  return Buffer.from(v, "base64");
}

/** Maximum length of one ExecEvent line (a 1 MiB chunk in base64, and room). */
const maxExecLine = 4 << 20;

/**
 * The events of an ExecEvent stream. With needExit, a stream that ends
 * before its exit event is a ProtocolError: the command's end is unknown.
 */
export async function* execEvents(res: IncomingMessage, what: string, needExit: boolean, signal?: AbortSignal): AsyncGenerator<ExecEvent> {
  for await (const line of ndjson(res, what, maxExecLine, signal)) {
    const ev = decode<{ stdout?: unknown; stderr?: unknown; exit?: ExecExit; dropped?: unknown }>("ExecEvent", line);
    if (ev.dropped !== undefined) {
      if (typeof ev.dropped !== "number") throw new ProtocolError(`${what}: dropped is not a number`);
      if (ev.dropped > 0) yield { type: "dropped", bytes: ev.dropped };
    }
    if (ev.stdout !== undefined) yield { type: "stdout", data: chunk(ev.stdout, what, "stdout") };
    if (ev.stderr !== undefined) yield { type: "stderr", data: chunk(ev.stderr, what, "stderr") };
    if (ev.exit !== undefined) {
      if (typeof ev.exit.code !== "number") throw new ProtocolError(`${what}: the exit has no code`);
      yield { type: "exit", exit: ev.exit };
      return;
    }
  }
  if (needExit) throw new ProtocolError(`${what}: the output stream ended before the exit status (sandbox stopped or sietchd restarted?)`);
}

/** Collects a command's events into its result, calling the callbacks on the way. */
export async function collect(events: AsyncIterable<ExecEvent>, opts: ExecOptions): Promise<ExecResult> {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  for await (const ev of events) {
    switch (ev.type) {
      case "stdout":
        out.push(ev.data);
        opts.onStdout?.(ev.data);
        break;
      case "stderr":
        err.push(ev.data);
        opts.onStderr?.(ev.data);
        break;
      case "exit":
        return {
          stdout: Buffer.concat(out).toString("utf8"),
          stderr: Buffer.concat(err).toString("utf8"),
          exitCode: ev.exit.code,
          signal: ev.exit.signal,
          timedOut: ev.exit.timedOut ?? false,
        };
    }
  }
  throw new ProtocolError("the output stream ended before the exit status");
}
