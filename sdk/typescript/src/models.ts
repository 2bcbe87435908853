// The API's models: their TypeScript shapes (camelCase) and, in MODELS, the
// runtime table that converts them to and from the wire (snake_case JSON).
// A test checks MODELS against the schemas of api/openapi.yaml, so a field
// added to or dropped from the API shows up as a failing test here.

import { ProtocolError } from "./errors.js";

/**
 * Each model's wire fields: wire name -> "camelName" or "camelName:kind",
 * kind being "date" (a date-time string, a Date here), "map" (an object of
 * strings kept as is), or another model's name, "[]" after it for an array.
 */
export const MODELS = {
  Limits: { cpus: "cpus", memory_mib: "memoryMiB", disk_mib: "diskMiB", timeout_s: "timeoutS", on_timeout: "onTimeout" },
  CreateRequest: {
    template: "template", image: "image", snapshot: "snapshot", limits: "limits:Limits", labels: "labels:map", env: "env:map",
    network: "network:NetworkSpec",
  },
  NetworkSpec: { enabled: "enabled", internet: "internet", allow: "allow", deny: "deny" },
  Network: {
    enabled: "enabled", internet: "internet", allow: "allow", deny: "deny", address: "address", gateway: "gateway", interface: "interface",
  },
  Sandbox: {
    id: "id", state: "state", reason: "reason", image: "image", template: "template", snapshot: "snapshot",
    limits: "limits:Limits", labels: "labels:map", created_at: "createdAt:date", vmm_pid: "vmmPid", agent: "agent", ports: "ports:Port[]",
    network: "network:Network",
  },
  SnapshotRequest: { kind: "kind" },
  PauseRequest: { to_disk: "toDisk" },
  Snapshot: {
    id: "id", sandbox_id: "sandboxId", kind: "kind", base: "base", role: "role", template: "template",
    size_bytes: "sizeBytes", created_at: "createdAt:date", dependents: "dependents",
  },
  TemplateRequest: {
    name: "name", image: "image", start_cmd: "startCmd", ready_port: "readyPort", ready_cmd: "readyCmd",
    ready_timeout_s: "readyTimeoutS", contexts: "contexts", limits: "limits:Limits",
  },
  Template: {
    name: "name", image: "image", start_cmd: "startCmd", ready_port: "readyPort", ready_cmd: "readyCmd", contexts: "contexts",
    limits: "limits:Limits", state: "state", step: "step", reason: "reason", snapshot: "snapshot", size_bytes: "sizeBytes",
    build_s: "buildS", created_at: "createdAt:date", sandboxes: "sandboxes", stale: "stale",
  },
  ForkRequest: { snapshot: "snapshot", count: "count" },
  ExecRequest: {
    cmd: "cmd", args: "args", env: "env:map", cwd: "cwd", stdin: "stdin", timeout_ms: "timeoutMs", tty: "tty:TTYSize", detach: "detach",
  },
  TTYSize: { rows: "rows", cols: "cols" },
  Started: { id: "id", pid: "pid" },
  Process: {
    id: "id", pid: "pid", cmd: "cmd", args: "args", tty: "tty", detached: "detached", state: "state", exit: "exit:ExecExit",
    output_bytes: "outputBytes", started_at: "startedAt:date", ended_at: "endedAt:date",
  },
  SignalRequest: { signal: "signal" },
  ExecEvent: { stdout: "stdout", stderr: "stderr", exit: "exit:ExecExit", dropped: "dropped" },
  ExecExit: { code: "code", signal: "signal", timed_out: "timedOut" },
  ContextRequest: { id: "id", language: "language", cwd: "cwd", env: "env:map" },
  Context: {
    id: "id", language: "language", cwd: "cwd", pid: "pid", state: "state", reason: "reason", runs: "runs", created_at: "createdAt:date",
  },
  RunRequest: { code: "code", timeout_ms: "timeoutMs" },
  RunEvent: { stdout: "stdout", stderr: "stderr", result: "result:map", error: "error:RunError", end: "end:RunEnd" },
  RunError: { name: "name", value: "value", traceback: "traceback" },
  RunEnd: { status: "status", execution_count: "executionCount", duration_ms: "durationMs", exit_code: "exitCode" },
  PortRequest: { guest_port: "guestPort", host_port: "hostPort", host_addr: "hostAddr" },
  Port: { guest_port: "guestPort", host_addr: "hostAddr", host_port: "hostPort" },
  Image: { name: "name", kind: "kind", size_bytes: "sizeBytes", created_at: "createdAt:date", source: "source", config: "config:ImageConfig" },
  ImageConfig: {
    env: "env", workdir: "workdir", user: "user", entrypoint: "entrypoint", cmd: "cmd", exposed_ports: "exposedPorts", labels: "labels:map",
  },
  ImageBuildEvent: { log: "log", image: "image:Image", error: "error:Error" },
  DesktopAction: { type: "type", x: "x", y: "y", x2: "x2", y2: "y2", button: "button", count: "count", dy: "dy", text: "text", keys: "keys" },
  DesktopInput: { display: "display", actions: "actions:DesktopAction[]" },
  DesktopState: { width: "width", height: "height", cursor_x: "cursorX", cursor_y: "cursorY" },
  VNCRequest: { display: "display", host_addr: "hostAddr", host_port: "hostPort" },
  VNC: { display: "display", password: "password", host_addr: "hostAddr", host_port: "hostPort", web_url: "webUrl" },
  BrowserRequest: { display: "display", url: "url" },
  Browser: { started: "started", devtools_port: "devtoolsPort", pid: "pid" },
  SandboxStats: {
    cgroup: "cgroup", cpu_user_s: "cpuUserS", cpu_system_s: "cpuSystemS", cpu_limit: "cpuLimit", cpu_periods: "cpuPeriods",
    cpu_throttled_periods: "cpuThrottledPeriods", cpu_throttled_s: "cpuThrottledS", memory_bytes: "memoryBytes",
    memory_peak_bytes: "memoryPeakBytes", memory_limit_bytes: "memoryLimitBytes", memory_oom_kills: "memoryOomKills",
    pids: "pids", pids_limit: "pidsLimit", disk_read_bytes: "diskReadBytes", disk_write_bytes: "diskWriteBytes",
    net_rx_bytes: "netRxBytes", net_tx_bytes: "netTxBytes",
  },
  Health: { status: "status", version: "version", sandboxes: "sandboxes", kvm: "kvm" },
  Error: { code: "code", message: "message", retry: "retry" },
  ErrorBody: { error: "error:Error" },
  FileInfo: { name: "name", type: "type", size: "size", mode: "mode", mtime: "mtime:date", target: "target" },
  FileList: { entries: "entries:FileInfo[]" },
  MkdirRequest: { path: "path", parents: "parents", mode: "mode" },
  RenameRequest: { from: "from", to: "to" },
  TarResult: { files: "files", dirs: "dirs", symlinks: "symlinks", bytes: "bytes" },
  WatchEvent: { type: "type", path: "path", is_dir: "isDir", time: "time:date" },
} as const satisfies Record<string, Record<string, string>>;

export type ModelName = keyof typeof MODELS;

/** One wire field of a model, parsed from its MODELS entry. */
export interface FieldSpec {
  wire: string;
  name: string;
  kind: "plain" | "date" | "map" | "model";
  model?: ModelName;
  array: boolean;
}

/** The fields of model, parsed from MODELS. */
export function fieldsOf(model: ModelName): FieldSpec[] {
  return Object.entries(MODELS[model] as Record<string, string>).map(([wire, spec]) => {
    const [name, kind] = spec.split(":") as [string, string | undefined];
    if (kind === undefined) return { wire, name, kind: "plain", array: false };
    if (kind === "date" || kind === "map") return { wire, name, kind, array: false };
    const array = kind.endsWith("[]");
    return { wire, name, kind: "model", model: kind.replace("[]", "") as ModelName, array };
  });
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * Converts a model as sietchd sent it to its camelCase shape. Unknown fields
 * (from a newer sietchd) are dropped; a value of the wrong kind is a
 * ProtocolError naming the model.
 */
export function decode<T>(model: ModelName, value: unknown): T {
  if (!isObject(value)) throw new ProtocolError(`sietchd sent a ${model} that is not a JSON object: ${JSON.stringify(value)?.slice(0, 80)}`);
  const out: Record<string, unknown> = {};
  for (const f of fieldsOf(model)) {
    const v = value[f.wire];
    if (v === undefined || v === null) continue;
    out[f.name] = decodeField(model, f, v);
  }
  return out as T;
}

function decodeField(model: ModelName, f: FieldSpec, v: unknown): unknown {
  switch (f.kind) {
    case "plain":
      return v;
    case "map":
      if (!isObject(v)) throw new ProtocolError(`sietchd sent ${model}.${f.wire} that is not an object`);
      return { ...v };
    case "date": {
      const d = typeof v === "string" ? new Date(v) : new Date(NaN);
      if (Number.isNaN(d.getTime())) throw new ProtocolError(`sietchd sent ${model}.${f.wire} that is not a date-time: ${JSON.stringify(v)}`);
      return d;
    }
    case "model":
      if (f.array) {
        if (!Array.isArray(v)) throw new ProtocolError(`sietchd sent ${model}.${f.wire} that is not an array`);
        return v.map((x) => decode(f.model!, x));
      }
      return decode(f.model!, v);
  }
}

/** Converts a camelCase request to the wire; undefined fields are left out. */
export function encode(model: ModelName, value: object): Record<string, unknown> {
  const src = value as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const f of fieldsOf(model)) {
    const v = src[f.name];
    if (v === undefined) continue;
    if (f.kind === "date") out[f.wire] = v instanceof Date ? v.toISOString() : v;
    else if (f.kind === "model" && v !== null) out[f.wire] = f.array ? (v as object[]).map((x) => encode(f.model!, x)) : encode(f.model!, v as object);
    else out[f.wire] = v;
  }
  return out;
}

// The shapes. Optional fields are those the API may leave out.

export type SandboxState = "creating" | "running" | "paused" | "snapshotting" | "suspended" | "stopped" | "failed";

export interface Limits {
  cpus?: number;
  memoryMiB?: number;
  /** Size of the writable layer. */
  diskMiB?: number;
  /** Lifetime in seconds; 0: none. */
  timeoutS?: number;
  /** What the lifetime's end does: stop, snapshot, or pause (suspend to disk). */
  onTimeout?: "stop" | "snapshot" | "pause";
}

export interface Port {
  guestPort: number;
  hostAddr: string;
  hostPort: number;
}

export interface SandboxInfo {
  id: string;
  state: SandboxState;
  /** Why it failed or stopped. */
  reason?: string;
  image?: string;
  template?: string;
  snapshot?: string;
  limits: Limits;
  labels?: Record<string, string>;
  createdAt: Date;
  vmmPid?: number;
  /** The guest agent answered its last call. */
  agent: boolean;
  ports?: Port[];
  /** Absent: the sandbox has no network interface. */
  network?: NetworkInfo;
}

/**
 * A sandbox's network as a create or a change asks for it: an interface of
 * its own (isolated while enabled is false) and an egress policy. allow and
 * deny hold IPv4 CIDRs, addresses or domain names (a name covers its
 * subdomains); an allowed entry wins over a denied one, and internet
 * (default true) decides the rest.
 */
export interface NetworkSpec {
  enabled: boolean;
  internet?: boolean;
  allow?: string[];
  deny?: string[];
}

/** A sandbox's network interface, address and egress policy. */
export interface NetworkInfo {
  enabled: boolean;
  internet: boolean;
  allow?: string[];
  deny?: string[];
  /** The guest's address with its prefix length. */
  address: string;
  /** The host side: the guest's route out and its DNS server. */
  gateway: string;
  /** The host's TAP. */
  interface: string;
}

export interface SnapshotInfo {
  id: string;
  sandboxId: string;
  kind: "full" | "diff";
  base?: string;
  role?: "template" | "suspend";
  template?: string;
  sizeBytes: number;
  createdAt: Date;
  dependents?: string[];
}

/** A running sandbox's resource use (its vmm and device processes, from
 * its cgroup) and its limits; counters count from its vmm's start. An
 * absent limit is none; absent net counters: no TAP. */
export interface SandboxStats {
  cgroup?: "v1" | "v2";
  cpuUserS: number;
  /** A vCPU's guest time counts here. */
  cpuSystemS: number;
  cpuLimit?: number;
  cpuPeriods: number;
  cpuThrottledPeriods: number;
  cpuThrottledS: number;
  memoryBytes: number;
  memoryPeakBytes?: number;
  memoryLimitBytes?: number;
  memoryOomKills: number;
  pids: number;
  pidsLimit?: number;
  diskReadBytes: number;
  diskWriteBytes: number;
  netRxBytes?: number;
  netTxBytes?: number;
}

export type ContextLanguage = "python" | "node" | "bash";

export interface TemplateInfo {
  name: string;
  image: string;
  startCmd?: string;
  readyPort?: number;
  readyCmd?: string;
  contexts?: string[];
  limits: Limits;
  state: "building" | "ready" | "failed";
  step?: "boot" | "start" | "ready" | "contexts" | "snapshot";
  reason?: string;
  snapshot?: string;
  sizeBytes: number;
  buildS?: number;
  createdAt: Date;
  /** Sandboxes from it that run now. */
  sandboxes: number;
  /** Its image's files changed since the build (its sandboxes run what the image held then). */
  stale?: boolean;
}

export interface ExecExit {
  /** -1 when a signal ended the process. */
  code: number;
  signal?: string;
  timedOut?: boolean;
}

export interface Started {
  /** The process's id in sb.processes. */
  id: string;
  /** In the guest. */
  pid: number;
}

export interface ProcessInfo {
  id: string;
  pid: number;
  cmd: string;
  args?: string[];
  tty?: boolean;
  detached?: boolean;
  state: "running" | "exited";
  exit?: ExecExit;
  outputBytes: number;
  startedAt: Date;
  endedAt?: Date;
}

export interface ContextInfo {
  id: string;
  language: ContextLanguage;
  cwd?: string;
  pid: number;
  state: "idle" | "running" | "dead";
  reason?: string;
  runs: number;
  createdAt: Date;
}

export interface RunError {
  /** The exception's class; ContextDied when the interpreter exited. */
  name: string;
  value: string;
  traceback?: string;
}

export interface RunEnd {
  status: "ok" | "error" | "interrupted" | "timeout";
  executionCount: number;
  durationMs: number;
  /** bash: the code's exit status. */
  exitCode?: number;
}

export interface ImageInfo {
  name: string;
  kind: "linux" | "testguest";
  sizeBytes: number;
  createdAt: Date;
  /** "dockerfile" for an image sietchd built; absent for a configured one. */
  source?: "dockerfile";
  config?: ImageConfig;
}

/**
 * A built image's runtime config: ENV, WORKDIR and USER are every exec's
 * defaults in its sandboxes; ENTRYPOINT and CMD a template's start command;
 * EXPOSE the ports it suggests forwarding.
 */
export interface ImageConfig {
  env?: string[];
  workdir?: string;
  user?: string;
  entrypoint?: string[];
  cmd?: string[];
  /** Such as "8000/tcp". */
  exposedPorts?: string[];
  labels?: Record<string, string>;
}


/**
 * One input action on a sandbox's display: move (x, y); click (x, y,
 * button 1-3, count 1-3); drag (x, y to x2, y2); scroll (dy, negative up);
 * type (text, any Unicode); key (keys such as "ctrl+l").
 */
export interface DesktopAction {
  type: "move" | "click" | "drag" | "scroll" | "type" | "key";
  x?: number;
  y?: number;
  x2?: number;
  y2?: number;
  button?: number;
  count?: number;
  dy?: number;
  text?: string;
  keys?: string;
}

export interface DesktopInput {
  /** The X display; default ":1". */
  display?: string;
  actions: DesktopAction[];
}

export interface DesktopState {
  width: number;
  height: number;
  cursorX: number;
  cursorY: number;
}

export interface VNCRequest {
  /** The X display; default ":1". */
  display?: string;
  /** Host address to listen on; default 127.0.0.1. */
  hostAddr?: string;
  /** Host port for VNC; 0 or unset: any free port, or the forward made before. */
  hostPort?: number;
}

/** How to view a desktop: a VNC server at hostAddr:hostPort with password, made for this call (the one before stops working). */
export interface VNC {
  display: string;
  password: string;
  hostAddr: string;
  hostPort: number;
  /** noVNC's page with the password, when the image has noVNC. */
  webUrl?: string;
}

export interface BrowserRequest {
  /** The X display; default ":1". */
  display?: string;
  /** An absolute http, https, file, data or about URL. */
  url: string;
}

/** started: the browser was not running and now starts with the URL; false: the URL opened in a new tab. */
export interface Browser {
  started: boolean;
  /** Guest port of the Chrome DevTools protocol (forward it with ports.forward). */
  devtoolsPort: number;
  pid?: number;
}

export interface Health {
  status: "ok";
  version: string;
  sandboxes: number;
  kvm: string;
}

export interface FileInfo {
  name: string;
  type: "file" | "dir" | "symlink" | "other";
  size: number;
  /** Octal Unix bits such as "0755". */
  mode: string;
  mtime: Date;
  /** A symlink's target. */
  target?: string;
}

export interface TarResult {
  files: number;
  dirs: number;
  symlinks: number;
  bytes: number;
}

export interface WatchEvent {
  type: "create" | "write" | "remove" | "rename" | "chmod" | "overflow";
  path?: string;
  isDir?: boolean;
  time: Date;
}
