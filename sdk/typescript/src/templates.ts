// Templates (booted, snapshotted sandboxes that new ones resume from) and
// the snapshots sietchd keeps.

import { type ConnectOptions, clientOf, list } from "./client.js";
import { type ContextLanguage, type Limits, type SnapshotInfo, type TemplateInfo, encode } from "./models.js";

export interface BuildOptions extends ConnectOptions, Limits {
  name: string;
  /** Default "default". */
  image?: string;
  /** Run with sh -c and left running in the snapshot. */
  startCmd?: string;
  /** Ready once a TCP connect to this guest port succeeds. */
  readyPort?: number;
  /** Run with sh -c until it exits 0; the snapshot is taken then. */
  readyCmd?: string;
  /** Default 300. */
  readyTimeoutS?: number;
  /** Languages whose default code context is warm in every sandbox from the template. */
  contexts?: ContextLanguage[];
  /** Resolve only once the build has ended (ready, or failed with its reason). */
  wait?: boolean;
}

/** Templates, by name. */
export class Template {
  private constructor() {}

  /** Starts building a template; with wait, returns once the build has ended. */
  static async build(opts: BuildOptions): Promise<TemplateInfo> {
    const client = clientOf(opts);
    const json = encode("TemplateRequest", opts);
    const limits = encode("Limits", opts);
    if (Object.keys(limits).length > 0) json.limits = limits;
    const t = await client.json<TemplateInfo>(
      { method: "POST", path: "/v1/templates", json, expect: 202, signal: opts.signal, what: `build template ${opts.name}` },
      "Template",
    );
    return opts.wait ? Template.get(opts.name, { ...opts, wait: true }) : t;
  }

  /** One template; with wait, once it is no longer building. */
  static async get(name: string, opts: ConnectOptions & { wait?: boolean } = {}): Promise<TemplateInfo> {
    return clientOf(opts).json(
      { method: "GET", path: `/v1/templates/${encodeURIComponent(name)}`, query: { wait: opts.wait ? "true" : undefined }, expect: 200, signal: opts.signal, what: `template ${name}` },
      "Template",
    );
  }

  static async list(opts: ConnectOptions = {}): Promise<TemplateInfo[]> {
    const out = await clientOf(opts).json({ method: "GET", path: "/v1/templates", expect: 200, signal: opts.signal });
    return list(out, "templates", "Template");
  }

  /** Removes a template and its snapshot (InUseError names what still needs it). */
  static async delete(name: string, opts: ConnectOptions = {}): Promise<void> {
    await clientOf(opts).empty({ method: "DELETE", path: `/v1/templates/${encodeURIComponent(name)}`, expect: 204, signal: opts.signal, what: `delete template ${name}` });
  }
}

/** Every snapshot sietchd keeps (sb.snapshot() takes one; Sandbox.restore starts from one). */
export class Snapshot {
  private constructor() {}

  /** Every snapshot, oldest first, with what depends on each. */
  static async list(opts: ConnectOptions = {}): Promise<SnapshotInfo[]> {
    const out = await clientOf(opts).json({ method: "GET", path: "/v1/snapshots", expect: 200, signal: opts.signal });
    return list(out, "snapshots", "Snapshot");
  }

  static async get(id: string, opts: ConnectOptions = {}): Promise<SnapshotInfo> {
    return clientOf(opts).json({ method: "GET", path: `/v1/snapshots/${encodeURIComponent(id)}`, expect: 200, signal: opts.signal, what: `snapshot ${id}` }, "Snapshot");
  }

  /** Removes a snapshot and its files; InUseError while anything depends on it. */
  static async delete(id: string, opts: ConnectOptions = {}): Promise<void> {
    await clientOf(opts).empty({ method: "DELETE", path: `/v1/snapshots/${encodeURIComponent(id)}`, expect: 204, signal: opts.signal, what: `delete snapshot ${id}` });
  }
}
