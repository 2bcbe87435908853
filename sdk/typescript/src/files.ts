// A sandbox's file system: sb.files.

import type { IncomingMessage } from "node:http";
import type { Readable } from "node:stream";
import { type Body, type CallOptions, type Client, list } from "./client.js";
import { NotFoundError } from "./errors.js";
import { type FileInfo, type TarResult, type WatchEvent, decode, encode } from "./models.js";
import { ndjson } from "./ndjson.js";

/** A permission mode: 0o644 or "0644". */
export type Mode = number | string;

function octal(mode: Mode): string {
  return typeof mode === "number" ? mode.toString(8).padStart(4, "0") : mode;
}

export interface ReadOptions extends CallOptions {
  /** text (UTF-8, the default), bytes (a Buffer) or stream (a Readable, for large files). */
  format?: "text" | "bytes" | "stream";
}

export class Files {
  constructor(
    private readonly client: Client,
    private readonly sandboxId: string,
  ) {}

  private path(rest: string): string {
    return `/v1/sandboxes/${encodeURIComponent(this.sandboxId)}/files${rest}`;
  }

  /** Reads a file: as text by default, as a Buffer with format "bytes", as a stream with format "stream". */
  read(path: string, opts?: ReadOptions & { format?: "text" }): Promise<string>;
  read(path: string, opts: ReadOptions & { format: "bytes" }): Promise<Buffer>;
  read(path: string, opts: ReadOptions & { format: "stream" }): Promise<Readable>;
  async read(path: string, opts: ReadOptions = {}): Promise<string | Buffer | Readable> {
    const req = { method: "GET", path: this.path(""), query: { path }, expect: 200, signal: opts.signal, what: `read ${path}` };
    if (opts.format === "stream") return (await this.client.open(req)) as IncomingMessage;
    const b = await this.client.bytes(req, Infinity);
    return opts.format === "bytes" ? b : b.toString("utf8");
  }

  /**
   * Writes data to path, replacing the file atomically; a stream or async
   * iterable is sent as it comes (any size).
   */
  async write(path: string, data: Body, opts: CallOptions & { mode?: Mode } = {}): Promise<void> {
    await this.client.empty({
      method: "PUT",
      path: this.path(""),
      query: { path, mode: opts.mode === undefined ? undefined : octal(opts.mode) },
      body: data,
      headers: { "Content-Type": "application/octet-stream" },
      expect: 204,
      signal: opts.signal,
      what: `write ${path}`,
    });
  }

  /** The entries of a directory, sorted by name. */
  async list(path: string, opts: CallOptions = {}): Promise<FileInfo[]> {
    const out = await this.client.json({ method: "GET", path: this.path("/list"), query: { path }, expect: 200, signal: opts.signal, what: `list ${path}` });
    return list(out, "entries", "FileInfo");
  }

  /** Describes path itself (a symlink is described, not followed). */
  async stat(path: string, opts: CallOptions = {}): Promise<FileInfo> {
    return this.client.json({ method: "GET", path: this.path("/stat"), query: { path }, expect: 200, signal: opts.signal, what: `stat ${path}` }, "FileInfo");
  }

  /** Whether path exists. */
  async exists(path: string, opts: CallOptions = {}): Promise<boolean> {
    try {
      await this.stat(path, opts);
      return true;
    } catch (err) {
      if (err instanceof NotFoundError) return false;
      throw err;
    }
  }

  /** Removes a file, a symlink or an empty directory; a whole tree with recursive. */
  async remove(path: string, opts: CallOptions & { recursive?: boolean } = {}): Promise<void> {
    await this.client.empty({
      method: "DELETE",
      path: this.path(""),
      query: { path, recursive: opts.recursive ? true : undefined },
      expect: 204,
      signal: opts.signal,
      what: `remove ${path}`,
    });
  }

  /** Makes a directory (with parents: its missing parents too, and an existing one is no error). */
  async mkdir(path: string, opts: CallOptions & { parents?: boolean; mode?: Mode } = {}): Promise<FileInfo> {
    const json = encode("MkdirRequest", { path, parents: opts.parents, mode: opts.mode === undefined ? undefined : octal(opts.mode) });
    return this.client.json({ method: "POST", path: this.path("/mkdir"), json, expect: 200, signal: opts.signal, what: `mkdir ${path}` }, "FileInfo");
  }

  /** Moves from to to; a file at to is replaced, a directory never is (ConflictError). */
  async rename(from: string, to: string, opts: CallOptions = {}): Promise<FileInfo> {
    const json = encode("RenameRequest", { from, to });
    return this.client.json({ method: "POST", path: this.path("/rename"), json, expect: 200, signal: opts.signal, what: `rename ${from} to ${to}` }, "FileInfo");
  }

  /**
   * The tree under dir as a tar archive (PAX, names relative to dir). A
   * stream that errors was cut short: the archive is incomplete.
   */
  async downloadTar(dir: string, opts: CallOptions = {}): Promise<Readable> {
    return this.client.open({ method: "GET", path: this.path("/tar"), query: { path: dir }, expect: 200, signal: opts.signal, what: `download ${dir}` });
  }

  /** Extracts a tar archive into dir (made if missing); the first refused entry fails it with an error naming the entry. */
  async uploadTar(dir: string, archive: Body, opts: CallOptions = {}): Promise<TarResult> {
    return this.client.json(
      {
        method: "PUT",
        path: this.path("/tar"),
        query: { path: dir },
        body: archive,
        headers: { "Content-Type": "application/x-tar" },
        expectContinue: true,
        expect: 200,
        signal: opts.signal,
        what: `upload into ${dir}`,
      },
      "TarResult",
    );
  }

  /**
   * Watches a directory: resolves once the watch is in place (every change
   * after that is reported) with an async iterable of its events. The
   * iteration ends when the directory is removed or moved, on close(), or
   * when opts.signal aborts.
   */
  async watch(dir: string, opts: CallOptions & { recursive?: boolean } = {}): Promise<Watcher> {
    const res = await this.client.open({
      method: "GET",
      path: this.path("/watch"),
      query: { path: dir, recursive: opts.recursive ? true : undefined },
      headers: { Accept: "application/x-ndjson" },
      expect: 200,
      signal: opts.signal,
      what: `watch ${dir}`,
    });
    return new Watcher(res, dir, opts.signal);
  }
}

/** A running watch of a directory: iterate its events; close() ends it. */
export class Watcher implements AsyncIterable<WatchEvent> {
  private closed = false;

  constructor(
    private readonly res: IncomingMessage,
    private readonly dir: string,
    private readonly signal?: AbortSignal,
  ) {}

  async *[Symbol.asyncIterator](): AsyncGenerator<WatchEvent> {
    try {
      for await (const line of ndjson(this.res, `watch ${this.dir}`, 64 << 10, this.signal)) {
        yield decode<WatchEvent>("WatchEvent", line);
      }
    } catch (err) {
      if (this.closed) return; // close() broke the stream on purpose
      throw err;
    }
  }

  /** Ends the watch. */
  close(): void {
    this.closed = true;
    this.res.destroy();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }
}
