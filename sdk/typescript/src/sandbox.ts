// Sandbox: one microVM, its lifecycle, commands and code.

import type { Readable } from "node:stream";
import { type CallOptions, type Client, type ConnectOptions, clientOf, list } from "./client.js";
import { type Execution, type RunCodeOptions, type RunEvent, collectRun, contextId, runEvents } from "./code.js";
import { NotFoundError } from "./errors.js";
import { type ExecEvent, type ExecOptions, type ExecResult, collect, execEvents, execRequest } from "./exec.js";
import { Files } from "./files.js";
import {
  type ContextInfo,
  type ContextLanguage,
  type DesktopAction,
  type DesktopState,
  type VNC,
  type VNCRequest,
  type Browser,
  type Limits,
  type NetworkInfo,
  type NetworkSpec,
  type SandboxInfo,
  type SandboxStats,
  type SnapshotInfo,
  encode,
} from "./models.js";
import { Ports, Processes } from "./processes.js";
import { EXEC_PROTOCOL, ExecSession } from "./session.js";

export interface CreateOptions extends ConnectOptions, Limits {
  /** A warm resume of the template's snapshot (the default: template "default"). */
  template?: string;
  /** A cold boot of the image. */
  image?: string;
  /** A snapshot's id (see Sandbox.restore). */
  snapshot?: string;
  /** Added to the environment of every command run in the sandbox. */
  env?: Record<string, string>;
  /** Kept with the sandbox; in the guest as JSON in /run/sietch/labels.json. */
  labels?: Record<string, string>;
  /** true: network with the internet; a NetworkSpec: a policy; absent: sietchd's default. */
  network?: boolean | NetworkSpec;
}

export interface ContextOptions extends CallOptions {
  /** Chosen by the caller, or generated. */
  id?: string;
  language?: ContextLanguage;
  cwd?: string;
  env?: Record<string, string>;
}

export class Sandbox {
  readonly client: Client;
  readonly id: string;
  /** The sandbox's file system. */
  readonly files: Files;
  /** Its background processes. */
  readonly processes: Processes;
  /** Its port forwards. */
  readonly ports: Ports;
  /** What sietchd last said about it (refresh with info()). */
  lastInfo: SandboxInfo;

  private constructor(client: Client, info: SandboxInfo) {
    this.client = client;
    this.id = info.id;
    this.lastInfo = info;
    this.files = new Files(client, info.id);
    this.processes = new Processes(client, info.id);
    this.ports = new Ports(client, info.id);
  }

  private path(rest = ""): string {
    return `/v1/sandboxes/${encodeURIComponent(this.id)}${rest}`;
  }

  /**
   * Creates a sandbox (from the template "default" unless opts names a
   * template, an image or a snapshot) and returns it running, its guest
   * agent answering.
   */
  static async create(opts: CreateOptions = {}): Promise<Sandbox> {
    const client = clientOf(opts);
    const limits = encode("Limits", opts);
    const json = encode("CreateRequest", {
      template: opts.template,
      image: opts.image,
      snapshot: opts.snapshot,
      env: opts.env,
      labels: opts.labels,
      network: typeof opts.network === "boolean" ? { enabled: opts.network } : opts.network,
    });
    if (Object.keys(limits).length > 0) json.limits = limits;
    const info = await client.json<SandboxInfo>(
      { method: "POST", path: "/v1/sandboxes", json, expect: 201, signal: opts.signal, what: "create sandbox" },
      "Sandbox",
    );
    return new Sandbox(client, info);
  }

  /** Starts a new sandbox from a snapshot (its own id), as it was when taken. */
  static async restore(snapshot: string | SnapshotInfo, opts: Omit<CreateOptions, "template" | "image" | "snapshot"> = {}): Promise<Sandbox> {
    return Sandbox.create({ ...opts, snapshot: typeof snapshot === "string" ? snapshot : snapshot.id });
  }

  /** A handle on an existing sandbox; NotFoundError when there is none with this id. */
  static async connect(id: string, opts: ConnectOptions = {}): Promise<Sandbox> {
    const client = clientOf(opts);
    const sb = new Sandbox(client, { id } as SandboxInfo);
    await sb.info(opts);
    return sb;
  }

  /** Every sandbox sietchd knows, in any state, oldest first. */
  static async list(opts: ConnectOptions = {}): Promise<SandboxInfo[]> {
    const out = await clientOf(opts).json({ method: "GET", path: "/v1/sandboxes", expect: 200, signal: opts.signal });
    return list(out, "sandboxes", "Sandbox");
  }

  /** What sietchd says about the sandbox now. */
  async info(opts: CallOptions = {}): Promise<SandboxInfo> {
    this.lastInfo = await this.client.json({ method: "GET", path: this.path(), expect: 200, signal: opts.signal, what: `sandbox ${this.id}` }, "Sandbox");
    return this.lastInfo;
  }

  /** Stops the sandbox (if it runs) and removes it; its snapshots stay. */
  async delete(opts: CallOptions = {}): Promise<void> {
    await this.client.empty({ method: "DELETE", path: this.path(), expect: 204, signal: opts.signal, what: `delete ${this.id}` });
  }

  /**
   * Pauses its vCPUs; with toDisk, snapshots it and ends its vmm (freeing its
   * memory) until resume() or a call that needs it.
   */
  async pause(opts: CallOptions & { toDisk?: boolean } = {}): Promise<SandboxInfo> {
    this.lastInfo = await this.client.json(
      { method: "POST", path: this.path("/pause"), json: encode("PauseRequest", { toDisk: opts.toDisk }), expect: 200, signal: opts.signal, what: `pause ${this.id}` },
      "Sandbox",
    );
    return this.lastInfo;
  }

  /** Resumes a paused sandbox, or restores a suspended one. */
  async resume(opts: CallOptions = {}): Promise<SandboxInfo> {
    this.lastInfo = await this.client.json({ method: "POST", path: this.path("/resume"), expect: 200, signal: opts.signal, what: `resume ${this.id}` }, "Sandbox");
    return this.lastInfo;
  }

  /** Snapshots it (full by default, or a diff); it goes on as it was. */
  async snapshot(opts: CallOptions & { kind?: "full" | "diff" } = {}): Promise<SnapshotInfo> {
    return this.client.json(
      { method: "POST", path: this.path("/snapshots"), json: encode("SnapshotRequest", { kind: opts.kind }), expect: 201, signal: opts.signal, what: `snapshot ${this.id}` },
      "Snapshot",
    );
  }

  /** Its resource use now (CPU seconds, memory, tasks, disk bytes) and its limits; it must be running or paused. */
  async stats(opts: CallOptions = {}): Promise<SandboxStats> {
    return this.client.json({ method: "GET", path: this.path("/stats"), expect: 200, signal: opts.signal, what: `stats of ${this.id}` }, "SandboxStats");
  }

  /** Its network interface, address and egress policy (WrongStateError when it has none). */
  async network(opts: CallOptions = {}): Promise<NetworkInfo> {
    return this.client.json({ method: "GET", path: this.path("/network"), expect: 200, signal: opts.signal, what: `network of ${this.id}` }, "Network");
  }

  /** Replaces its egress policy while it runs: new connections follow it at once, open ones stay. */
  async setNetwork(spec: NetworkSpec, opts: CallOptions = {}): Promise<NetworkInfo> {
    return this.client.json(
      { method: "PUT", path: this.path("/network"), json: encode("NetworkSpec", spec), expect: 200, signal: opts.signal, what: `network of ${this.id}` },
      "Network",
    );
  }

  /** Its X display's screen size and pointer (display default ":1"). */
  async desktop(opts: CallOptions & { display?: string } = {}): Promise<DesktopState> {
    const q = opts.display ? `?${new URLSearchParams({ display: opts.display })}` : "";
    return this.client.json({ method: "GET", path: this.path(`/desktop${q}`), expect: 200, signal: opts.signal, what: `desktop of ${this.id}` }, "DesktopState");
  }

  /** A PNG of its screen, or of region [x, y, width, height], shrunk by scale (0.05 to 1; 0.5 halves each side). */
  async screenshot(opts: CallOptions & { display?: string; region?: [number, number, number, number]; scale?: number } = {}): Promise<Buffer> {
    const q = new URLSearchParams();
    if (opts.display) q.set("display", opts.display);
    if (opts.scale !== undefined && opts.scale !== 1) q.set("scale", String(opts.scale));
    if (opts.region) for (const [i, k] of ["x", "y", "w", "h"].entries()) q.set(k, String(opts.region[i]));
    const qs = q.size > 0 ? `?${q}` : "";
    return this.client.bytes({ method: "GET", path: this.path(`/screenshot${qs}`), expect: 200, signal: opts.signal, what: `screenshot of ${this.id}` }, 64 << 20);
  }

  /** Applies mouse and keyboard actions in order; answers once they are done. */
  async input(actions: DesktopAction[], opts: CallOptions & { display?: string } = {}): Promise<DesktopState> {
    return this.client.json(
      { method: "POST", path: this.path("/input"), json: encode("DesktopInput", { display: opts.display, actions }), expect: 200, signal: opts.signal, what: `input to ${this.id}` },
      "DesktopState",
    );
  }

  /** Clicks button (1 left, 2 middle, 3 right) count times at (x, y). */
  async click(x: number, y: number, opts: CallOptions & { button?: number; count?: number } = {}): Promise<DesktopState> {
    return this.input([{ type: "click", x, y, button: opts.button ?? 1, count: opts.count ?? 1 }], opts);
  }

  /** Types text (any Unicode) into whatever has the focus. */
  async typeText(text: string, opts: CallOptions = {}): Promise<DesktopState> {
    return this.input([{ type: "type", text }], opts);
  }

  /** Presses a key combination such as "ctrl+l". */
  async press(keys: string, opts: CallOptions = {}): Promise<DesktopState> {
    return this.input([{ type: "key", keys }], opts);
  }

  /** Serves its desktop over VNC with a password made now (the one before stops working): the forwarded host port, the password, noVNC's URL. */
  async vnc(opts: CallOptions & VNCRequest = {}): Promise<VNC> {
    const req: VNCRequest = { display: opts.display, hostAddr: opts.hostAddr, hostPort: opts.hostPort };
    return this.client.json(
      { method: "POST", path: this.path("/vnc"), json: encode("VNCRequest", req), expect: 200, signal: opts.signal, what: `VNC of ${this.id}` },
      "VNC",
    );
  }

  /** Opens url in its desktop's browser, starting the browser if it is not running (a second call while it comes up is a ConflictError: retry). */
  async openUrl(url: string, opts: CallOptions & { display?: string } = {}): Promise<Browser> {
    return this.client.json(
      { method: "POST", path: this.path("/browser"), json: encode("BrowserRequest", { url, display: opts.display }), expect: 200, signal: opts.signal, what: `browser of ${this.id}` },
      "Browser",
    );
  }

  /** Its snapshots, oldest first. */
  async listSnapshots(opts: CallOptions = {}): Promise<SnapshotInfo[]> {
    const out = await this.client.json({ method: "GET", path: this.path("/snapshots"), expect: 200, signal: opts.signal });
    return list(out, "snapshots", "Snapshot");
  }

  /** Starts count new sandboxes from one of its snapshots (default: a full one taken now). */
  async fork(count = 1, opts: CallOptions & { snapshot?: string | SnapshotInfo } = {}): Promise<Sandbox[]> {
    const snapshot = typeof opts.snapshot === "object" ? opts.snapshot.id : opts.snapshot;
    const out = await this.client.json(
      { method: "POST", path: this.path("/fork"), json: encode("ForkRequest", { count, snapshot }), expect: 201, signal: opts.signal, what: `fork ${this.id}` },
    );
    return list<SandboxInfo>(out, "sandboxes", "Sandbox").map((info) => new Sandbox(this.client, info));
  }

  /** The serial console log so far. */
  async console(opts: CallOptions = {}): Promise<string> {
    return (await this.client.bytes({ method: "GET", path: this.path("/console"), expect: 200, signal: opts.signal, what: `console of ${this.id}` })).toString("utf8");
  }

  /** The serial console as a stream that follows new output until the sandbox ends (or signal aborts). */
  async consoleStream(opts: CallOptions = {}): Promise<Readable> {
    return this.client.open({ method: "GET", path: this.path("/console"), query: { follow: "1" }, expect: 200, signal: opts.signal, what: `console of ${this.id}` });
  }

  /**
   * Runs a command and returns its output and exit. Without opts.args cmd
   * is a shell command line (`sh -c cmd`). A non-zero exit is no error.
   */
  async exec(cmd: string, opts: ExecOptions = {}): Promise<ExecResult> {
    return collect(this.execStream(cmd, opts), opts);
  }

  /** Runs a command, yielding its stdout, stderr and exit events as they come; the last is exit. */
  async *execStream(cmd: string, opts: ExecOptions = {}): AsyncGenerator<ExecEvent> {
    const what = `exec ${cmd}`;
    const res = await this.client.open({
      method: "POST",
      path: this.path("/exec"),
      json: execRequest(cmd, opts),
      headers: { Accept: "application/x-ndjson" },
      expect: 200,
      signal: opts.signal,
      what,
    });
    yield* execEvents(res, what, true, opts.signal);
  }

  /**
   * Starts a command with its stdio on an exec stream and returns once it
   * runs: write its stdin (any size), resize its terminal (opts.tty),
   * signal it, wait() for its exit. Its output goes to opts.onStdout and
   * opts.onStderr (on a terminal, all of it is stdout). Aborting
   * opts.signal, or close(), hangs up, which ends the command.
   */
  async execInteractive(cmd: string, opts: Omit<ExecOptions, "stdin"> & { tty?: { rows: number; cols: number } } = {}): Promise<ExecSession> {
    const what = `exec ${cmd}`;
    const { socket, head } = await this.client.upgrade(
      { method: "POST", path: this.path("/exec"), json: execRequest(cmd, opts), expect: 101, signal: opts.signal, what },
      EXEC_PROTOCOL,
    );
    return ExecSession.start(socket, head, opts, what, opts.signal);
  }

  /**
   * Runs code in a context (by default python's "default"); variables and
   * imports persist between runs in the same context.
   */
  async runCode(code: string, opts: RunCodeOptions = {}): Promise<Execution> {
    return collectRun(this.runCodeStream(code, opts), opts);
  }

  /** Runs code, yielding its stdout, stderr, result and error events as they come; the last is end. */
  async *runCodeStream(code: string, opts: RunCodeOptions = {}): AsyncGenerator<RunEvent> {
    const ctx = contextId(opts);
    const what = `run in context ${ctx}`;
    const timeoutMs = opts.timeoutS === undefined ? undefined : Math.round(opts.timeoutS * 1000);
    const res = await this.client.open({
      method: "POST",
      path: this.path(`/contexts/${encodeURIComponent(ctx)}/run`),
      json: encode("RunRequest", { code, timeoutMs }),
      headers: { Accept: "application/x-ndjson" },
      expect: 200,
      signal: opts.signal,
      what,
    });
    yield* runEvents(res, what, opts.signal);
  }

  /** Starts a code context (a python, node or bash interpreter keeping its state between runs). */
  async createContext(opts: ContextOptions = {}): Promise<ContextInfo> {
    const json = encode("ContextRequest", { id: opts.id, language: opts.language, cwd: opts.cwd, env: opts.env });
    return this.client.json({ method: "POST", path: this.path("/contexts"), json, expect: 201, signal: opts.signal, what: "create context" }, "Context");
  }

  async listContexts(opts: CallOptions = {}): Promise<ContextInfo[]> {
    const out = await this.client.json({ method: "GET", path: this.path("/contexts"), expect: 200, signal: opts.signal });
    return list(out, "contexts", "Context");
  }

  /** Ends a context and its interpreter. */
  async deleteContext(context: string | ContextInfo, opts: CallOptions = {}): Promise<void> {
    const id = typeof context === "string" ? context : context.id;
    await this.client.empty({ method: "DELETE", path: this.path(`/contexts/${encodeURIComponent(id)}`), expect: 204, signal: opts.signal, what: `delete context ${id}` });
  }

  /** Interrupts the code running in a context (as Ctrl-C); the context and its state live on. */
  async interruptContext(context: string | ContextInfo, opts: CallOptions = {}): Promise<void> {
    const id = typeof context === "string" ? context : context.id;
    await this.client.empty({ method: "POST", path: this.path(`/contexts/${encodeURIComponent(id)}/interrupt`), expect: 204, signal: opts.signal, what: `interrupt context ${id}` });
  }

  /** Starts a context's interpreter anew; its state is lost. */
  async restartContext(context: string | ContextInfo, opts: CallOptions = {}): Promise<ContextInfo> {
    const id = typeof context === "string" ? context : context.id;
    return this.client.json(
      { method: "POST", path: this.path(`/contexts/${encodeURIComponent(id)}/restart`), expect: 200, signal: opts.signal, what: `restart context ${id}` },
      "Context",
    );
  }

  /** `await using sb = await Sandbox.create()` deletes it at the end of the block. */
  async [Symbol.asyncDispose](): Promise<void> {
    try {
      await this.delete();
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
    }
  }
}

/** Creates a sandbox, hands it to fn, and deletes it when fn is done (or throws). */
export async function withSandbox<T>(opts: CreateOptions, fn: (sb: Sandbox) => Promise<T>): Promise<T> {
  const sb = await Sandbox.create(opts);
  try {
    return await fn(sb);
  } finally {
    await sb[Symbol.asyncDispose]();
  }
}
