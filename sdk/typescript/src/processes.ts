// A sandbox's background processes (sb.processes) and port forwards (sb.ports).

import { type CallOptions, type Client, list } from "./client.js";
import { type ExecEvent, type ExecOptions, execEvents, execRequest } from "./exec.js";
import { type Port, type ProcessInfo, type Started, encode } from "./models.js";

export interface StartOptions extends Omit<ExecOptions, "onStdout" | "onStderr"> {
  /** Run on a terminal of this size (stderr then joins stdout). */
  tty?: { rows: number; cols: number };
}

export class Processes {
  constructor(
    private readonly client: Client,
    private readonly sandboxId: string,
  ) {}

  private path(proc?: string, rest = ""): string {
    const base = `/v1/sandboxes/${encodeURIComponent(this.sandboxId)}`;
    return proc === undefined ? `${base}/processes` : `${base}/processes/${encodeURIComponent(proc)}${rest}`;
  }

  /**
   * Starts cmd in the background: it runs on after the call, its output is
   * kept (the last 256 KiB) for output(), and it stays listed until delete().
   */
  async start(cmd: string, opts: StartOptions = {}): Promise<Started> {
    return this.client.json(
      {
        method: "POST",
        path: `/v1/sandboxes/${encodeURIComponent(this.sandboxId)}/exec`,
        json: execRequest(cmd, { ...opts, detach: true }),
        expect: 201,
        signal: opts.signal,
        what: `start ${cmd}`,
      },
      "Started",
    );
  }

  /** Running commands, and detached ones kept after they exited, oldest first. */
  async list(opts: CallOptions = {}): Promise<ProcessInfo[]> {
    const out = await this.client.json({ method: "GET", path: this.path(), expect: 200, signal: opts.signal });
    return list(out, "processes", "Process");
  }

  async get(proc: string, opts: CallOptions = {}): Promise<ProcessInfo> {
    return this.client.json({ method: "GET", path: this.path(proc), expect: 200, signal: opts.signal, what: `process ${proc}` }, "Process");
  }

  /** Waits for the process to exit and describes it. */
  async wait(proc: string, opts: CallOptions = {}): Promise<ProcessInfo> {
    return this.client.json({ method: "POST", path: this.path(proc, "/wait"), expect: 200, signal: opts.signal, what: `wait for ${proc}` }, "Process");
  }

  /** Sends a signal ("SIGTERM", "TERM" or "15") to the process's group. */
  async signal(proc: string, signal: string, opts: CallOptions = {}): Promise<void> {
    await this.client.empty({
      method: "POST",
      path: this.path(proc, "/signal"),
      json: encode("SignalRequest", { signal }),
      expect: 204,
      signal: opts.signal,
      what: `signal ${proc}`,
    });
  }

  /** Kills the process if it runs (SIGKILL to its group) and forgets it. */
  async delete(proc: string, opts: CallOptions = {}): Promise<void> {
    await this.client.empty({ method: "DELETE", path: this.path(proc), expect: 204, signal: opts.signal, what: `delete process ${proc}` });
  }

  /**
   * A detached process's kept output from byte offset on, as events; with
   * follow it goes on until the process exits. The last event is exit once
   * the process has exited.
   */
  async *output(proc: string, opts: CallOptions & { offset?: number; follow?: boolean } = {}): AsyncGenerator<ExecEvent> {
    const res = await this.client.open({
      method: "GET",
      path: this.path(proc, "/output"),
      query: { offset: opts.offset, follow: opts.follow ? true : undefined },
      headers: { Accept: "application/x-ndjson" },
      expect: 200,
      signal: opts.signal,
      what: `output of ${proc}`,
    });
    yield* execEvents(res, `output of ${proc}`, false, opts.signal);
  }
}

export class Ports {
  constructor(
    private readonly client: Client,
    private readonly sandboxId: string,
  ) {}

  private path(rest = ""): string {
    return `/v1/sandboxes/${encodeURIComponent(this.sandboxId)}/ports${rest}`;
  }

  /** Forwards a host TCP port (hostPort; default any free one) on hostAddr (default 127.0.0.1) to guestPort. */
  async forward(guestPort: number, opts: CallOptions & { hostPort?: number; hostAddr?: string } = {}): Promise<Port> {
    const json = encode("PortRequest", { guestPort, hostPort: opts.hostPort, hostAddr: opts.hostAddr });
    return this.client.json({ method: "POST", path: this.path(), json, expect: 201, signal: opts.signal, what: `forward port ${guestPort}` }, "Port");
  }

  async list(opts: CallOptions = {}): Promise<Port[]> {
    const out = await this.client.json({ method: "GET", path: this.path(), expect: 200, signal: opts.signal });
    return list(out, "ports", "Port");
  }

  /** Ends the forward listening on hostPort and its connections. */
  async delete(hostPort: number, opts: CallOptions = {}): Promise<void> {
    await this.client.empty({ method: "DELETE", path: this.path(`/${hostPort}`), expect: 204, signal: opts.signal, what: `close port ${hostPort}` });
  }
}
