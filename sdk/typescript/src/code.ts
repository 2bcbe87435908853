// Code contexts: long-lived python, node or bash interpreters in the guest,
// and the RunEvent stream a run of code answers with.

import type { IncomingMessage } from "node:http";
import type { CallOptions } from "./client.js";
import { ProtocolError } from "./errors.js";
import { type ContextInfo, type ContextLanguage, type RunEnd, type RunError, decode } from "./models.js";
import { ndjson } from "./ndjson.js";

export interface RunCodeOptions extends CallOptions {
  /** The context to run in (its id, or as createContext returned it). Default: the language's default context. */
  context?: string | ContextInfo;
  /** Picks the default context ("default", "default-node", "default-bash") when context is not given. Default python. */
  language?: ContextLanguage;
  /** Interrupt the run after this many seconds (the execution's status is then "timeout"). */
  timeoutS?: number;
  onStdout?: (text: string) => void;
  onStderr?: (text: string) => void;
  onResult?: (result: Result) => void;
}

/** The value of the last expression, or a figure the code displayed, in each form it offers. */
export interface Result {
  /** text/plain: always there. */
  text?: string;
  html?: string;
  markdown?: string;
  svg?: string;
  /** image/png, decoded. */
  png?: Buffer;
  /** application/json, parsed. */
  json?: unknown;
  /** Every form by MIME type, as sent (image/png in base64). */
  raw: Record<string, string>;
}

export type RunEvent =
  | { type: "stdout"; text: string }
  | { type: "stderr"; text: string }
  | { type: "result"; result: Result }
  | { type: "error"; error: RunError }
  | { type: "end"; end: RunEnd };

/** A finished run. An exception in the code is no SietchError: it is in error, and status is "error". */
export interface Execution extends RunEnd {
  stdout: string;
  stderr: string;
  results: Result[];
  error?: RunError;
  /** The text of the last result (the value of the code's last expression), if any. */
  text?: string;
}

/** The id of the context opts names. */
export function contextId(opts: RunCodeOptions): string {
  if (opts.context !== undefined) return typeof opts.context === "string" ? opts.context : opts.context.id;
  const lang = opts.language ?? "python";
  return lang === "python" ? "default" : `default-${lang}`;
}

function toResult(raw: Record<string, unknown>, what: string): Result {
  const r: Result = { raw: {} };
  for (const [mime, v] of Object.entries(raw)) {
    if (typeof v !== "string") throw new ProtocolError(`${what}: result ${mime} is not a string`);
    r.raw[mime] = v;
  }
  r.text = r.raw["text/plain"];
  r.html = r.raw["text/html"];
  r.markdown = r.raw["text/markdown"];
  r.svg = r.raw["image/svg+xml"];
  if (r.raw["image/png"] !== undefined) r.png = Buffer.from(r.raw["image/png"], "base64");
  if (r.raw["application/json"] !== undefined) {
    try {
      r.json = JSON.parse(r.raw["application/json"]);
    } catch {
      r.json = r.raw["application/json"];
    }
  }
  for (const k of ["text", "html", "markdown", "svg", "png", "json"] as const) if (r[k] === undefined) delete r[k];
  return r;
}

/** A result line may carry a large image. */
const maxRunLine = 64 << 20;

/** The events of a RunEvent stream; one that ends before its end event is a ProtocolError. */
export async function* runEvents(res: IncomingMessage, what: string, signal?: AbortSignal): AsyncGenerator<RunEvent> {
  for await (const line of ndjson(res, what, maxRunLine, signal)) {
    const ev = decode<{ stdout?: unknown; stderr?: unknown; result?: Record<string, unknown>; error?: RunError; end?: RunEnd }>("RunEvent", line);
    if (typeof ev.stdout === "string") yield { type: "stdout", text: ev.stdout };
    if (typeof ev.stderr === "string") yield { type: "stderr", text: ev.stderr };
    if (ev.result !== undefined) yield { type: "result", result: toResult(ev.result, what) };
    if (ev.error !== undefined) yield { type: "error", error: ev.error };
    if (ev.end !== undefined) {
      if (typeof ev.end.status !== "string") throw new ProtocolError(`${what}: the end has no status`);
      yield { type: "end", end: ev.end };
      return;
    }
  }
  throw new ProtocolError(`${what}: the run's stream ended before its end event (sandbox stopped or sietchd restarted?)`);
}

/** Collects a run's events into its Execution, calling the callbacks on the way. */
export async function collectRun(events: AsyncIterable<RunEvent>, opts: RunCodeOptions): Promise<Execution> {
  let stdout = "";
  let stderr = "";
  const results: Result[] = [];
  let error: RunError | undefined;
  for await (const ev of events) {
    switch (ev.type) {
      case "stdout":
        stdout += ev.text;
        opts.onStdout?.(ev.text);
        break;
      case "stderr":
        stderr += ev.text;
        opts.onStderr?.(ev.text);
        break;
      case "result":
        results.push(ev.result);
        opts.onResult?.(ev.result);
        break;
      case "error":
        error = ev.error;
        break;
      case "end": {
        const x: Execution = { ...ev.end, stdout, stderr, results };
        if (error) x.error = error;
        const text = results.at(-1)?.text;
        if (text !== undefined) x.text = text;
        return x;
      }
    }
  }
  throw new ProtocolError("the run's stream ended before its end event");
}
