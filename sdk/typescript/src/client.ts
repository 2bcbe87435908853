// The connection to one sietchd: where it listens, its bearer token, and
// the HTTP requests every other part of the SDK is made of.

import { readFileSync } from "node:fs";
import * as http from "node:http";
import * as https from "node:https";
import { type Duplex, Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { ConnectionError, ERROR_CLASSES, ProtocolError, SietchError, UnauthorizedError, errorFromResponse } from "./errors.js";
import { type Health, type ImageInfo, type ModelName, decode } from "./models.js";
import { ndjson } from "./ndjson.js";

/** Maximum length of one line of a build's stream. */
const maxBuildLine = 1 << 20;

/** What buildImage builds. */
export interface ImageBuildOptions extends CallOptions {
  /** The Dockerfile's path inside the context archive; default "Dockerfile". */
  dockerfile?: string;
  /** The stage to build; default the last. */
  target?: string;
  buildArgs?: Record<string, string>;
  noCache?: boolean;
  /** Hears the build's output as it comes. */
  onLog?: (text: string) => void;
}

/** Where sietchd listens unless told otherwise. */
export const DEFAULT_ADDR = "/var/lib/sietch/sietchd.sock";
/** Where sietchd writes its bearer token at first start. */
export const DEFAULT_TOKEN_FILE = "/var/lib/sietch/token";

export interface ClientOptions {
  /**
   * sietchd's address: "unix:///path/sietchd.sock", "/path/sietchd.sock",
   * "http://host:port" or "tcp://host:port". Default: env SIETCH_ADDR, else
   * $SIETCH_STATE_DIR/sietchd.sock, else /var/lib/sietch/sietchd.sock.
   */
  addr?: string;
  /** The bearer token itself; wins over tokenFile. */
  token?: string;
  /** Default: env SIETCH_TOKEN_FILE, else $SIETCH_STATE_DIR/token, else /var/lib/sietch/token. */
  tokenFile?: string;
  userAgent?: string;
}

/** Every call takes an AbortSignal: abort it (or use AbortSignal.timeout(ms)) to give up. */
export interface CallOptions {
  signal?: AbortSignal;
}

/** For calls that are not made on a Sandbox: the Client to use (default: Client.default()). */
export interface ConnectOptions extends CallOptions {
  client?: Client;
}

/** A request body: bytes, text, or a stream of bytes sent as it comes. */
export type Body = string | Uint8Array | Readable | AsyncIterable<Uint8Array> | Iterable<Uint8Array>;

/** One HTTP call as the SDK's parts describe it. */
export interface Request extends CallOptions {
  method: string;
  path: string;
  query?: Record<string, string | number | boolean | undefined>;
  /** Sent as JSON. */
  json?: unknown;
  body?: Body;
  headers?: Record<string, string>;
  /** The status that means success; any other is an error. */
  expect: number;
  /** Send "Expect: 100-continue" and the body only once sietchd agrees. */
  expectContinue?: boolean;
  /** Says what failed in error messages, such as "exec ls"; default "METHOD path". */
  what?: string;
}

const maxErrorBody = 64 << 10;
const maxJSONBody = 64 << 20;

type Target = { socketPath: string } | { protocol: "http:" | "https:"; host: string; port: number };

/** Parses a sietchd address; throws a ConnectionError naming the accepted forms. */
export function parseAddr(addr: string): Target {
  const bad = () =>
    new ConnectionError(`sietchd address ${JSON.stringify(addr)}: want unix:///path, /path, http://host:port or tcp://host:port`);
  if (addr.startsWith("unix://") || addr.startsWith("/")) {
    const path = addr.startsWith("unix://") ? addr.slice("unix://".length) : addr;
    if (!path.startsWith("/")) throw bad();
    return { socketPath: path };
  }
  const spelled = addr.startsWith("tcp://") ? "http://" + addr.slice("tcp://".length) : addr;
  let u: URL;
  try {
    u = new URL(spelled);
  } catch {
    throw bad();
  }
  if ((u.protocol !== "http:" && u.protocol !== "https:") || u.hostname === "") throw bad();
  const port = u.port ? Number(u.port) : u.protocol === "https:" ? 443 : 80;
  return { protocol: u.protocol, host: u.hostname.replace(/^\[|\]$/g, ""), port };
}

function env(name: string): string | undefined {
  const v = process.env[name];
  return v === undefined || v === "" ? undefined : v;
}

let defaultClient: Client | undefined;

/** A connection to one sietchd. Safe for concurrent calls; keeps connections alive. */
export class Client {
  /** The address as given or found in the environment. */
  readonly addr: string;
  private readonly target: Target;
  private readonly token: string | undefined;
  private readonly tokenProblem: string | undefined;
  private readonly agent: http.Agent;
  private readonly userAgent: string;

  constructor(opts: ClientOptions = {}) {
    const state = env("SIETCH_STATE_DIR");
    this.addr = opts.addr ?? env("SIETCH_ADDR") ?? (state ? `${state}/sietchd.sock` : DEFAULT_ADDR);
    this.target = parseAddr(this.addr);
    this.userAgent = opts.userAgent ?? "sietch-typescript";
    if (opts.token !== undefined) {
      this.token = opts.token.trim();
    } else {
      const file = opts.tokenFile ?? env("SIETCH_TOKEN_FILE") ?? (state ? `${state}/token` : DEFAULT_TOKEN_FILE);
      try {
        this.token = readFileSync(file, "utf8").trim();
      } catch (err) {
        // Only health works without a token: say so when a call needs it.
        this.tokenProblem =
          `cannot read the token ${file}: ${(err as Error).message} ` +
          "(sietchd writes it at first start; set SIETCH_TOKEN_FILE or SIETCH_STATE_DIR, or pass token, and check you may read it)";
      }
    }
    const agentOpts = { keepAlive: true };
    this.agent = "protocol" in this.target && this.target.protocol === "https:" ? new https.Agent(agentOpts) : new http.Agent(agentOpts);
  }

  /** The client from the environment (SIETCH_ADDR, SIETCH_TOKEN_FILE, SIETCH_STATE_DIR), made on first use. */
  static default(): Client {
    defaultClient ??= new Client();
    return defaultClient;
  }

  /** Closes idle kept-alive connections. */
  close(): void {
    this.agent.destroy();
  }

  /** Whether sietchd is up (needs no token). */
  async health(opts: CallOptions = {}): Promise<Health> {
    return this.json({ method: "GET", path: "/v1/health", expect: 200, signal: opts.signal }, "Health");
  }

  /** sietchd's metrics in the Prometheus text format. */
  async metrics(opts: CallOptions = {}): Promise<string> {
    return (await this.bytes({ method: "GET", path: "/metrics", expect: 200, signal: opts.signal })).toString("utf8");
  }

  /** The OpenAPI 3 document (YAML) that describes the API. */
  async openAPIDocument(opts: CallOptions = {}): Promise<string> {
    return (await this.bytes({ method: "GET", path: "/v1/openapi.yaml", expect: 200, signal: opts.signal })).toString("utf8");
  }

  /** The images sandboxes can start from. */
  async listImages(opts: CallOptions = {}): Promise<ImageInfo[]> {
    const out = await this.json<{ images: unknown[] }>({ method: "GET", path: "/v1/images", expect: 200, signal: opts.signal });
    return list(out, "images", "Image");
  }

  /**
   * Builds image name from a Dockerfile in sietchd: RUN steps run in a
   * build sandbox and each step's result is cached. context is the build
   * context as a tar archive holding the Dockerfile (Node has no tar
   * writer of its own: make it with `tar -c -C DIR .`, or stream one);
   * sietchd applies its .dockerignore. A build refused, or one that failed
   * (a RUN's exit status, with its line), is a SietchError of its code.
   */
  async buildImage(name: string, context: Body, opts: ImageBuildOptions = {}): Promise<ImageInfo> {
    const q = new URLSearchParams({ name });
    if (opts.dockerfile) q.set("dockerfile", opts.dockerfile);
    if (opts.target) q.set("target", opts.target);
    if (opts.noCache) q.set("no_cache", "true");
    for (const [k, v] of Object.entries(opts.buildArgs ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) q.append("build_arg", `${k}=${v}`);
    const what = "POST /v1/images";
    const res = await this.open({
      method: "POST", path: `/v1/images?${q}`, what, body: context, expect: 200, signal: opts.signal,
      headers: { "Content-Type": "application/x-tar", Accept: "application/x-ndjson" },
    });
    for await (const line of ndjson(res, what, maxBuildLine, opts.signal)) {
      const ev = decode<{ log?: string; image?: ImageInfo; error?: { code: string; message: string; retry?: boolean } }>("ImageBuildEvent", line);
      if (ev.log !== undefined) opts.onLog?.(ev.log);
      if (ev.error !== undefined) {
        const cls = ERROR_CLASSES[ev.error.code] ?? SietchError;
        throw new cls(`${what}: ${ev.error.message}`, { status: 200, code: ev.error.code, retry: ev.error.retry === true });
      }
      if (ev.image !== undefined) return ev.image;
    }
    throw new ProtocolError(`${what}: the stream ended before the image or an error (sietchd restarted?)`);
  }

  /**
   * Sends req and returns the response once its status is req.expect; the
   * caller reads (or destroys) it. Any other status is a SietchError of the
   * code sietchd gave. Aborting req.signal, before or after the response,
   * ends it with the signal's reason.
   */
  async open(req: Request): Promise<http.IncomingMessage> {
    const { res, socket } = await this.exchange(req);
    if (socket) {
      socket.destroy();
      throw new ProtocolError(`${req.what ?? `${req.method} ${req.path}`}: sietchd switched protocols unasked`, res.statusCode);
    }
    return res;
  }

  /**
   * Sends req with "Connection: Upgrade" to protocol and returns the
   * connection once sietchd has switched to it (101); head is what came
   * after the 101. Any other answer is an error as for open().
   */
  async upgrade(req: Request, protocol: string): Promise<{ socket: Duplex; head: Buffer }> {
    const { res, socket, head } = await this.exchange({ ...req, expect: 101, headers: { ...req.headers, Connection: "Upgrade", Upgrade: protocol } });
    if (!socket) {
      res.destroy();
      throw new ProtocolError(`${req.what ?? `${req.method} ${req.path}`}: sietchd answered ${res.statusCode} without switching to ${protocol}`, res.statusCode);
    }
    return { socket, head: head ?? Buffer.alloc(0) };
  }

  private exchange(req: Request): Promise<{ res: http.IncomingMessage; socket?: Duplex; head?: Buffer }> {
    const signal = req.signal;
    if (signal?.aborted) return Promise.reject(signal.reason);
    const what = req.what ?? `${req.method} ${req.path}`;
    const auth = req.path !== "/v1/health";
    if (auth && this.token === undefined) return Promise.reject(new UnauthorizedError(`${what}: ${this.tokenProblem}`, { code: "unauthorized" }));

    const headers: Record<string, string> = { "User-Agent": this.userAgent, ...req.headers };
    if (auth && this.token) headers["Authorization"] = `Bearer ${this.token}`;
    let body: Body | undefined = req.body;
    if (req.json !== undefined) {
      body = JSON.stringify(req.json);
      headers["Content-Type"] = "application/json";
    }
    if (typeof body === "string") body = Buffer.from(body);
    if (body instanceof Uint8Array) headers["Content-Length"] = String(body.byteLength);
    if (req.expectContinue && body !== undefined) headers["Expect"] = "100-continue";

    const hreq = ("socketPath" in this.target ? http : this.target.protocol === "https:" ? https : http).request({
      ...this.target,
      path: req.path + query(req.query),
      method: req.method,
      headers,
      agent: this.agent,
    });

    return new Promise((resolve, reject) => {
      let answered = false;
      const onAbort = () => {
        hreq.destroy(signal!.reason);
        reject(signal!.reason);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      const done = () => signal?.removeEventListener("abort", onAbort);

      hreq.on("error", (err) => {
        if (answered) return;
        done();
        if (signal?.aborted) return reject(signal.reason);
        reject(
          new ConnectionError(
            `${what}: cannot reach sietchd at ${this.addr}: ${err.message} ` +
              "(is sietchd running? set SIETCH_ADDR or SIETCH_STATE_DIR to where it listens)",
            err,
          ),
        );
      });

      hreq.on("upgrade", (res, socket, head) => {
        answered = true;
        // The signal now governs the connection: aborting ends it.
        const onAbortSocket = () => socket.destroy(signal!.reason);
        done();
        if (signal) {
          signal.addEventListener("abort", onAbortSocket, { once: true });
          socket.once("close", () => signal.removeEventListener("abort", onAbortSocket));
        }
        resolve({ res, socket, head });
      });

      hreq.on("response", (res) => {
        answered = true;
        if (res.statusCode === req.expect) {
          // The signal now governs the body: aborting ends its reading.
          res.once("close", done);
          resolve({ res });
          return;
        }
        done();
        readAll(res, maxErrorBody, true).then(
          (raw) => {
            reject(errorFromResponse(res.statusCode ?? 0, raw.toString("utf8"), what));
            if (!hreq.writableFinished) hreq.destroy();
          },
          (err) => reject(signal?.aborted ? signal.reason : new ProtocolError(`${what}: reading the error: ${(err as Error).message}`)),
        );
      });

      const send = () => {
        if (body === undefined) hreq.end();
        else if (body instanceof Uint8Array) hreq.end(body);
        else {
          const src = body instanceof Readable ? body : Readable.from(body as AsyncIterable<Uint8Array>, { objectMode: false });
          pipeline(src, hreq).catch((err) => {
            if (answered) return; // the answer says what went wrong
            hreq.destroy();
            done();
            reject(signal?.aborted ? signal.reason : err);
          });
        }
      };
      if (headers["Expect"]) {
        // Like curl: send anyway after a second without "100 Continue".
        const timer = setTimeout(send, 1000);
        hreq.once("continue", () => {
          clearTimeout(timer);
          send();
        });
        hreq.once("response", () => clearTimeout(timer));
      } else {
        send();
      }
    });
  }

  /** Sends req and reads the whole answer. */
  async bytes(req: Request, limit = maxJSONBody): Promise<Buffer> {
    const res = await this.open(req);
    try {
      return await readAll(res, limit, false);
    } catch (err) {
      if (req.signal?.aborted) throw req.signal.reason;
      if (err instanceof SietchError) throw err;
      throw new ProtocolError(`${req.what ?? `${req.method} ${req.path}`}: the answer was cut short: ${(err as Error).message}`, res.statusCode);
    }
  }

  /** Sends req and decodes its JSON answer (as model when given). */
  async json<T>(req: Request, model?: ModelName): Promise<T> {
    const raw = await this.bytes(req);
    let v: unknown;
    try {
      v = JSON.parse(raw.toString("utf8"));
    } catch {
      throw new ProtocolError(`${req.what ?? `${req.method} ${req.path}`}: sietchd's answer is not JSON: ${JSON.stringify(raw.subarray(0, 80).toString("utf8"))}`, req.expect);
    }
    return model ? decode<T>(model, v) : (v as T);
  }

  /** Sends req and drops the (empty) answer. */
  async empty(req: Request): Promise<void> {
    const res = await this.open(req);
    res.resume();
  }
}

/** The array out[key] of a list answer, each element decoded as model. */
export function list<T>(out: unknown, key: string, model: ModelName): T[] {
  const arr = (out as Record<string, unknown> | null)?.[key];
  if (!Array.isArray(arr)) throw new ProtocolError(`sietchd's answer has no ${key} array`);
  return arr.map((x) => decode<T>(model, x));
}

function query(q: Request["query"]): string {
  if (!q) return "";
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(q)) if (v !== undefined) p.set(k, String(v));
  const s = p.toString();
  return s ? "?" + s : "";
}

/** Reads a response whole, up to limit bytes (truncating when truncate, else failing). */
async function readAll(res: http.IncomingMessage, limit: number, truncate: boolean): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const chunk of res as AsyncIterable<Buffer>) {
    n += chunk.length;
    if (n > limit) {
      if (truncate) {
        chunks.push(chunk.subarray(0, chunk.length - (n - limit)));
        res.destroy();
        break;
      }
      res.destroy();
      throw new ProtocolError(`the answer is larger than ${limit} bytes`);
    }
    chunks.push(chunk);
  }
  // An answer whose length was announced but not delivered was cut short.
  if (!res.complete && !truncate) throw new Error("the connection closed before the whole answer came");
  return Buffer.concat(chunks);
}

/** The client opts names, or the default one. */
export function clientOf(opts: ConnectOptions | undefined): Client {
  return opts?.client ?? Client.default();
}
