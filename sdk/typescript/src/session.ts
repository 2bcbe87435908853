// Interactive exec: a command's stdio over an exec stream (HTTP upgrade to
// sietch-exec.v1; framing in wire/execstream and docs/AGENT.md, "Exec
// streams"): stdin of any size, a terminal, resizes and signals.

import type { Duplex } from "node:stream";
import { ProtocolError, SietchError, ERROR_CLASSES } from "./errors.js";
import type { ExecExit } from "./models.js";

export const EXEC_PROTOCOL = "sietch-exec.v1";

/** A frame's payload is at most this long. */
export const MAX_PAYLOAD = 1 << 20;

/** Frame types (wire/execstream). */
export const Frame = {
  Stdin: 1,
  StdinEOF: 2,
  Resize: 3,
  Signal: 4,
  Started: 16,
  Stdout: 17,
  Stderr: 18,
  Exit: 19,
  Error: 20,
} as const;

/** Encodes one frame, or several of the same type when data is over MAX_PAYLOAD. */
export function encodeFrames(type: number, data: Uint8Array): Buffer {
  const parts: Buffer[] = [];
  let off = 0;
  do {
    const n = Math.min(data.length - off, MAX_PAYLOAD);
    const hdr = Buffer.alloc(5);
    hdr[0] = type;
    hdr.writeUInt32BE(n, 1);
    parts.push(hdr, Buffer.from(data.buffer, data.byteOffset + off, n));
    off += n;
  } while (off < data.length);
  return Buffer.concat(parts);
}

/** Splits a byte stream into frames; push() returns the whole frames so far. */
export class FrameReader {
  private buf: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): { type: number; payload: Buffer }[] {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const out: { type: number; payload: Buffer }[] = [];
    while (this.buf.length >= 5) {
      const n = this.buf.readUInt32BE(1);
      if (n > MAX_PAYLOAD) throw new ProtocolError(`exec stream: a frame of type ${this.buf[0]} has ${n} bytes, over the ${MAX_PAYLOAD} a frame may hold`);
      if (this.buf.length < 5 + n) break;
      out.push({ type: this.buf[0]!, payload: this.buf.subarray(5, 5 + n) });
      this.buf = this.buf.subarray(5 + n);
    }
    return out;
  }

  /** Whether the stream stopped inside a frame. */
  get partial(): boolean {
    return this.buf.length > 0;
  }
}

function parse<T>(payload: Buffer, what: string): T {
  try {
    return JSON.parse(payload.toString("utf8")) as T;
  } catch {
    throw new ProtocolError(`exec stream: ${what} frame is not JSON`);
  }
}

export interface SessionCallbacks {
  onStdout?: (data: Buffer) => void;
  onStderr?: (data: Buffer) => void;
}

/**
 * A command running with its stdio on an exec stream. Write its stdin,
 * resize its terminal, signal it, and wait() for its exit while its output
 * goes to the callbacks. close() hangs up, which ends the command.
 */
export class ExecSession {
  /** The process's id (sb.processes). */
  readonly id: string;
  /** In the guest. */
  readonly pid: number;
  private readonly done: Promise<ExecExit>;

  private constructor(
    private readonly socket: Duplex,
    started: { id: string; pid: number },
    done: Promise<ExecExit>,
  ) {
    this.id = started.id;
    this.pid = started.pid;
    this.done = done;
    // wait() may come late: an early failure must not be an unhandled rejection.
    done.catch(() => {});
  }

  /** Reads the Started frame off a freshly upgraded connection and returns the session. */
  static start(socket: Duplex, head: Buffer, cb: SessionCallbacks, what: string, signal?: AbortSignal): Promise<ExecSession> {
    const reader = new FrameReader();
    return new Promise((resolveStart, rejectStart) => {
      let session: ExecSession | undefined;
      let resolveDone!: (e: ExecExit) => void;
      let rejectDone!: (e: unknown) => void;
      const done = new Promise<ExecExit>((res, rej) => {
        resolveDone = res;
        rejectDone = rej;
      });
      let finished = false;
      const fail = (err: unknown) => {
        if (finished) return;
        finished = true;
        socket.destroy();
        if (session) rejectDone(err);
        else rejectStart(err);
      };
      const onFrame = (f: { type: number; payload: Buffer }) => {
        if (!session) {
          if (f.type !== Frame.Started) {
            if (f.type === Frame.Error) return fail(frameError(f.payload, what));
            return fail(new ProtocolError(`${what}: the exec stream began with a frame of type ${f.type}, not Started`));
          }
          session = new ExecSession(socket, parse(f.payload, "a Started"), done);
          resolveStart(session);
          return;
        }
        switch (f.type) {
          case Frame.Stdout:
            cb.onStdout?.(Buffer.from(f.payload));
            break;
          case Frame.Stderr:
            cb.onStderr?.(Buffer.from(f.payload));
            break;
          case Frame.Exit: {
            const e = parse<{ code: number; signal?: string; timed_out?: boolean }>(f.payload, "an Exit");
            finished = true;
            socket.end();
            const exit: ExecExit = { code: e.code };
            if (e.signal) exit.signal = e.signal;
            if (e.timed_out) exit.timedOut = true;
            resolveDone(exit);
            break;
          }
          case Frame.Error:
            fail(frameError(f.payload, what));
            break;
        }
      };
      const onData = (chunk: Buffer) => {
        try {
          for (const f of reader.push(chunk)) {
            onFrame(f);
            if (finished) return;
          }
        } catch (err) {
          fail(err);
        }
      };
      socket.on("data", onData);
      socket.on("error", (err) => fail(signal?.aborted ? signal.reason : new ProtocolError(`${what}: the exec stream broke: ${err.message}`)));
      socket.on("close", () => fail(signal?.aborted ? signal.reason : new ProtocolError(`${what}: the exec stream ended before the exit status`)));
      if (head.length > 0) onData(head);
    });
  }

  private send(type: number, data: Uint8Array): Promise<void> {
    return new Promise((resolve, reject) => {
      this.socket.write(encodeFrames(type, data), (err) => (err ? reject(err) : resolve()));
    });
  }

  /** Sends data to the command's stdin. */
  write(data: string | Uint8Array): Promise<void> {
    return this.send(Frame.Stdin, typeof data === "string" ? Buffer.from(data) : data);
  }

  /** Ends the command's stdin (on a terminal, types end-of-file). */
  closeStdin(): Promise<void> {
    return this.send(Frame.StdinEOF, new Uint8Array(0));
  }

  /** Sets the command's terminal size. */
  resize(rows: number, cols: number): Promise<void> {
    return this.send(Frame.Resize, Buffer.from(JSON.stringify({ rows, cols })));
  }

  /** Sends a signal ("SIGINT", "INT" or "2") to the command's process group. */
  kill(signal = "SIGKILL"): Promise<void> {
    return this.send(Frame.Signal, Buffer.from(JSON.stringify({ signal })));
  }

  /** How the command ended, once it has and its output is in. */
  wait(): Promise<ExecExit> {
    return this.done;
  }

  /** Hangs up: the command is killed if it still runs. */
  close(): void {
    this.socket.destroy();
  }
}

function frameError(payload: Buffer, what: string): SietchError {
  const e = parse<{ code?: string; message?: string }>(payload, "an Error");
  const code = e.code ?? "internal";
  const cls = ERROR_CLASSES[code] ?? SietchError;
  return new cls(`${what}: ${e.message ?? code}`, { status: 500, code });
}
