// The interactive exec stream against a tiny local server that speaks
// sietch-exec.v1: framing both ways, large stdin, refusals, hang-ups.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import * as http from "node:http";
import type { Duplex } from "node:stream";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Client, NotFoundError, ProtocolError, Sandbox } from "../src/index.js";
import { FrameReader, Frame, MAX_PAYLOAD, encodeFrames } from "../src/session.js";

const dir = mkdtempSync(join(tmpdir(), "sietch-ts-"));
const sock = join(dir, "s.sock");
type Upgrade = (req: http.IncomingMessage, socket: Duplex, head: Buffer) => void;
let onUpgrade: Upgrade = (_req, socket) => socket.destroy();

/** Reads the request's JSON body off an upgraded socket, then hands each frame to onFrame. */
function frames(req: http.IncomingMessage, socket: Duplex, head: Buffer, onFrame: (type: number, payload: Buffer) => void): Promise<unknown> {
  let want = Number(req.headers["content-length"] ?? 0);
  let body = Buffer.alloc(0);
  const r = new FrameReader();
  return new Promise((resolve) => {
    const feed = (chunk: Buffer) => {
      if (want > 0) {
        const take = chunk.subarray(0, want);
        body = Buffer.concat([body, take]);
        want -= take.length;
        chunk = chunk.subarray(take.length);
        if (want === 0) resolve(JSON.parse(body.toString()));
      }
      for (const f of r.push(chunk)) onFrame(f.type, f.payload);
    };
    socket.on("data", feed);
    if (head.length > 0) feed(head);
  });
}
const server = http.createServer((req, res) => {
  res.writeHead(200, { "Content-Type": "application/json" });
  res.end(JSON.stringify({ id: "sb-1", state: "running", limits: {}, created_at: "2025-01-02T03:04:05Z", agent: true }));
});
server.on("upgrade", (req: http.IncomingMessage, socket: Duplex, head: Buffer) => onUpgrade(req, socket, head));

before(() => new Promise<void>((resolve) => server.listen(sock, resolve)));
after(() => {
  server.closeAllConnections();
  server.close();
  rmSync(dir, { recursive: true, force: true });
});

const json = (v: unknown) => Buffer.from(JSON.stringify(v));
const switched = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: sietch-exec.v1\r\n\r\n";

async function sandbox(): Promise<Sandbox> {
  return Sandbox.connect("sb-1", { client: new Client({ addr: sock, token: "t" }) });
}

describe("exec stream frames", () => {
  it("round-trip, split at the 1 MiB bound", () => {
    const big = Buffer.alloc(MAX_PAYLOAD + 10, 7);
    const wire = encodeFrames(Frame.Stdin, big);
    const r = new FrameReader();
    const frames = [...r.push(wire.subarray(0, 3)), ...r.push(wire.subarray(3, 1000)), ...r.push(wire.subarray(1000))];
    assert.deepEqual(frames.map((f) => [f.type, f.payload.length]), [[1, MAX_PAYLOAD], [1, 10]]);
    assert.equal(r.partial, false);
    assert.deepEqual(encodeFrames(Frame.StdinEOF, new Uint8Array(0)), Buffer.from([2, 0, 0, 0, 0]));
  });

  it("over the bound are refused", () => {
    const hdr = Buffer.from([17, 0, 0x10, 0, 1]); // 1 MiB + 1
    assert.throws(() => new FrameReader().push(hdr), ProtocolError);
  });
});

describe("execInteractive", () => {
  it("streams stdin to the command and its output back, until the exit", async () => {
    let request: Promise<unknown> = Promise.resolve();
    onUpgrade = (req, socket, head) => {
      assert.equal(req.headers.upgrade, "sietch-exec.v1");
      socket.write(switched);
      socket.write(encodeFrames(Frame.Started, json({ id: "p-1", pid: 42 })));
      let got = 0;
      request = frames(req, socket, head, (type, payload) => {
        if (type === Frame.Stdin) got += payload.length;
        if (type === Frame.Resize) socket.write(encodeFrames(Frame.Stderr, payload));
        if (type === Frame.StdinEOF) {
          socket.write(encodeFrames(Frame.Stdout, Buffer.from(`read ${got}`)));
          socket.end(encodeFrames(Frame.Exit, json({ code: 0 })));
        }
      });
    };
    const sb = await sandbox();
    const out: string[] = [];
    const err: string[] = [];
    const s = await sb.execInteractive("cat", { tty: { rows: 24, cols: 80 }, onStdout: (b) => out.push(b.toString()), onStderr: (b) => err.push(b.toString()) });
    assert.equal(s.id, "p-1");
    assert.equal(s.pid, 42);
    await s.resize(50, 132);
    await s.write(Buffer.alloc(3 << 20, 1)); // three frames' worth
    await s.closeStdin();
    assert.deepEqual(await s.wait(), { code: 0 });
    assert.deepEqual(out, [`read ${3 << 20}`]);
    assert.deepEqual(JSON.parse(err.join("")), { rows: 50, cols: 132 });
    assert.deepEqual(await request, { cmd: "sh", args: ["-c", "cat"], tty: { rows: 24, cols: 80 } });
  });

  it("a refusal before the switch is the error sietchd sent", async () => {
    onUpgrade = (_req, socket) => {
      const body = JSON.stringify({ error: { code: "not_found", message: "no sandbox sb-1" } });
      socket.end(`HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
    };
    const sb = await sandbox();
    await assert.rejects(sb.execInteractive("cat"), NotFoundError);
  });

  it("a hang-up before the exit is an error from wait()", async () => {
    onUpgrade = (_req, socket) => {
      socket.write(switched);
      socket.end(encodeFrames(Frame.Started, json({ id: "p-2", pid: 7 })));
    };
    const s = await (await sandbox()).execInteractive("cat");
    await assert.rejects(s.wait(), /ended before the exit/);
  });

  it("an Error frame ends it with that code", async () => {
    onUpgrade = (_req, socket) => {
      socket.write(switched);
      socket.write(encodeFrames(Frame.Started, json({ id: "p-3", pid: 7 })));
      socket.end(encodeFrames(Frame.Error, json({ code: "agent_unavailable", message: "agent gone" })));
    };
    const s = await (await sandbox()).execInteractive("cat");
    await assert.rejects(s.wait(), (e: Error & { code?: string }) => e.code === "agent_unavailable" && /agent gone/.test(e.message));
  });
});
