// NDJSON: the streamed answers of exec, process output, code runs and
// watches, one JSON object per line.

import type { IncomingMessage } from "node:http";
import { ProtocolError } from "./errors.js";

/**
 * Yields each line of res parsed as JSON. A line over maxLine bytes, a line
 * that is not JSON, or a last line without its newline is a ProtocolError
 * (the last means the stream was cut short). An aborted signal ends it with
 * the signal's reason.
 */
export async function* ndjson(res: IncomingMessage, what: string, maxLine: number, signal?: AbortSignal): AsyncGenerator<unknown> {
  let pending: Buffer[] = [];
  let pendingLen = 0;
  try {
    for await (const chunk of res as AsyncIterable<Buffer>) {
      let start = 0;
      for (;;) {
        const nl = chunk.indexOf(0x0a, start);
        if (nl < 0) break;
        const line = pendingLen === 0 ? chunk.subarray(start, nl) : Buffer.concat([...pending, chunk.subarray(start, nl)]);
        pending = [];
        pendingLen = 0;
        start = nl + 1;
        if (line.length > maxLine) throw new ProtocolError(`${what}: a line of ${line.length} bytes, over the ${maxLine} allowed`);
        if (line.length === 0 || (line.length === 1 && line[0] === 0x0d)) continue;
        yield parseLine(line, what);
      }
      if (start < chunk.length) {
        pending.push(chunk.subarray(start));
        pendingLen += chunk.length - start;
        if (pendingLen > maxLine) throw new ProtocolError(`${what}: a line over the ${maxLine} bytes allowed`);
      }
    }
  } catch (err) {
    if (signal?.aborted) throw signal.reason;
    if (err instanceof ProtocolError) throw err;
    throw new ProtocolError(`${what}: the stream broke: ${(err as Error).message}`);
  } finally {
    // Leaving early (break, an error) must not leave the connection open.
    if (!res.complete) res.destroy();
  }
  if (pendingLen > 0) throw new ProtocolError(`${what}: the stream was cut inside a line`);
}

function parseLine(line: Buffer, what: string): unknown {
  try {
    return JSON.parse(line.toString("utf8"));
  } catch {
    throw new ProtocolError(`${what}: a line that is not JSON: ${JSON.stringify(line.subarray(0, 80).toString("utf8"))}`);
  }
}
