// The SDK against a tiny local server that answers oddly: what a user sees
// when sietchd (or something in its place) misbehaves.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import * as http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  AgentUnavailableError,
  Client,
  ConnectionError,
  InternalError,
  InvalidJSONError,
  BadRequestError,
  NotFoundError,
  ProtocolError,
  Sandbox,
  Template,
  UnauthorizedError,
  WrongStateError,
} from "../src/index.js";

type Handler = (req: http.IncomingMessage, res: http.ServerResponse, body: Buffer) => void;

const dir = mkdtempSync(join(tmpdir(), "sietch-ts-"));
const sock = join(dir, "s.sock");
let handler: Handler = (_req, res) => res.end();
const seen: { method: string; url: string; auth?: string; body: string }[] = [];
const server = http.createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on("data", (c: Buffer) => chunks.push(c));
  req.on("end", () => {
    const body = Buffer.concat(chunks);
    seen.push({ method: req.method!, url: req.url!, auth: req.headers.authorization, body: body.toString() });
    handler(req, res, body);
  });
});

before(() => new Promise<void>((resolve) => server.listen(sock, resolve)));
after(() => {
  server.closeAllConnections();
  server.close();
  rmSync(dir, { recursive: true, force: true });
});

const client = () => new Client({ addr: `unix://${sock}`, token: "secret\n" });

function json(status: number, v: unknown): Handler {
  return (_req, res) => {
    res.writeHead(status, { "Content-Type": "application/json" });
    res.end(JSON.stringify(v));
  };
}

const sandbox = { id: "sb-1", state: "running", limits: { cpus: 1, memory_mib: 256 }, created_at: "2025-01-02T03:04:05Z", agent: true };

async function connected(): Promise<Sandbox> {
  handler = json(200, sandbox);
  return Sandbox.connect("sb-1", { client: client() });
}

describe("requests", () => {
  it("send the bearer token, the path and the body sietchd expects", async () => {
    seen.length = 0;
    handler = json(201, sandbox);
    const sb = await Sandbox.create({ client: client(), template: "t1", cpus: 2, memoryMiB: 512, labels: { a: "b" } });
    assert.equal(sb.id, "sb-1");
    assert.equal(sb.lastInfo.limits.memoryMiB, 256);
    assert.ok(sb.lastInfo.createdAt instanceof Date);
    assert.deepEqual(seen[0], {
      method: "POST",
      url: "/v1/sandboxes",
      auth: "Bearer secret",
      body: JSON.stringify({ template: "t1", labels: { a: "b" }, limits: { cpus: 2, memory_mib: 512 } }),
    });
  });

  it("escape ids and guest paths", async () => {
    const sb = await connected();
    seen.length = 0;
    handler = json(200, { entries: [] });
    await sb.files.list("/tmp/a b&c");
    assert.equal(seen[0]!.url, "/v1/sandboxes/sb-1/files/list?path=%2Ftmp%2Fa+b%26c");
  });

  it("run a command line with sh -c, and args as given", async () => {
    const sb = await connected();
    seen.length = 0;
    handler = (_req, res) => res.end(JSON.stringify({ exit: { code: 0 } }) + "\n");
    await sb.exec("echo hi | wc", { timeoutS: 1.5, stdin: "x" });
    await sb.exec("ls", { args: ["-l"] });
    assert.deepEqual(JSON.parse(seen[0]!.body), { cmd: "sh", args: ["-c", "echo hi | wc"], stdin: "eA==", timeout_ms: 1500 });
    assert.deepEqual(JSON.parse(seen[1]!.body), { cmd: "ls", args: ["-l"] });
  });
});

describe("error answers", () => {
  it("become the class of their code, with status, message and retry", async () => {
    handler = json(404, { error: { code: "not_found", message: "no sandbox sb-9" } });
    const err = await Sandbox.connect("sb-9", { client: client() }).catch((e: unknown) => e);
    assert.ok(err instanceof NotFoundError);
    assert.equal(err.status, 404);
    assert.equal(err.code, "not_found");
    assert.match(err.message, /no sandbox sb-9/);

    const sb2 = await connected();
    handler = json(503, { error: { code: "agent_unavailable", message: "the agent did not answer", retry: true } });
    const e2 = await sb2.files.stat("/x").catch((e: unknown) => e);
    assert.ok(e2 instanceof AgentUnavailableError);
    assert.equal(e2.retry, true);

    handler = json(400, { error: { code: "invalid_json", message: "bad" } });
    const e3 = await Sandbox.list({ client: client() }).catch((e: unknown) => e);
    assert.ok(e3 instanceof InvalidJSONError && e3 instanceof BadRequestError);
  });

  it("that are no ErrorBody still get a class from the status", async () => {
    handler = (_req, res) => {
      res.writeHead(502, { "Content-Type": "text/html" });
      res.end("<html>bad gateway</html>");
    };
    const err = await Template.list({ client: client() }).catch((e: unknown) => e);
    assert.ok(err instanceof InternalError, String(err));
    assert.equal(err.status, 502);
    assert.match(err.message, /bad gateway/);

    handler = (_req, res) => {
      res.writeHead(409);
      res.end();
    };
    const sb = await connected();
    handler = (_req, res) => {
      res.writeHead(409);
      res.end();
    };
    assert.ok((await sb.pause().catch((e: unknown) => e)) instanceof WrongStateError);
  });

  it("of unknown codes are still SietchErrors with the code", async () => {
    handler = json(418, { error: { code: "teapot", message: "short and stout" } });
    const err = await Sandbox.list({ client: client() }).catch((e: unknown) => e);
    assert.equal((err as { code: string }).code, "teapot");
    assert.equal((err as { status: number }).status, 418);
  });
});

describe("malformed answers", () => {
  it("not JSON is a ProtocolError", async () => {
    handler = (_req, res) => res.end("{not json");
    const err = await Sandbox.list({ client: client() }).catch((e: unknown) => e);
    assert.ok(err instanceof ProtocolError, String(err));
    assert.match(err.message, /not JSON/);
  });

  it("JSON of the wrong shape is a ProtocolError", async () => {
    handler = json(200, { sandboxes: [{ ...sandbox, created_at: "yesterday" }] });
    assert.ok((await Sandbox.list({ client: client() }).catch((e: unknown) => e)) instanceof ProtocolError);
    handler = json(200, { nothing: [] });
    assert.ok((await Sandbox.list({ client: client() }).catch((e: unknown) => e)) instanceof ProtocolError);
  });

  it("an exec stream without its exit is cut short, after the output that came", async () => {
    const sb = await connected();
    handler = (_req, res) => {
      res.write(JSON.stringify({ stdout: Buffer.from("partial").toString("base64") }) + "\n");
      res.end();
    };
    const got: string[] = [];
    const err = await sb.exec("x", { onStdout: (b) => got.push(b.toString()) }).catch((e: unknown) => e);
    assert.ok(err instanceof ProtocolError, String(err));
    assert.match(err.message, /ended before the exit/);
    assert.deepEqual(got, ["partial"]);
  });

  it("a stream cut inside a line is a ProtocolError", async () => {
    const sb = await connected();
    handler = (_req, res) => res.end('{"stdout":"aGk="}\n{"exit":{"co');
    const err = await sb.exec("x").catch((e: unknown) => e);
    assert.ok(err instanceof ProtocolError, String(err));
  });

  it("a chunk that is not base64 is a ProtocolError", async () => {
    const sb = await connected();
    handler = (_req, res) => res.end('{"stdout":"$$$"}\n{"exit":{"code":0}}\n');
    assert.ok((await sb.exec("x").catch((e: unknown) => e)) instanceof ProtocolError);
  });

  it("lines split across writes are put together", async () => {
    const sb = await connected();
    handler = (_req, res) => {
      const all = '{"stdout":"aGVs"}\n{"stderr":"ZXJy"}\n{"stdout":"bG8="}\n{"exit":{"code":3,"signal":""}}\n';
      let i = 0;
      const step = () => {
        if (i >= all.length) return res.end();
        res.write(all.slice(i, i + 5));
        i += 5;
        setImmediate(step);
      };
      step();
    };
    const r = await sb.exec("x");
    assert.equal(r.stdout, "hello");
    assert.equal(r.stderr, "err");
    assert.equal(r.exitCode, 3);
  });

  it("a run that ends without its end event is cut short", async () => {
    const sb = await connected();
    handler = (_req, res) => res.end('{"stdout":"1\\n"}\n');
    const err = await sb.runCode("print(1)").catch((e: unknown) => e);
    assert.ok(err instanceof ProtocolError, String(err));
  });

  it("results decode their forms: text, png bytes, json", async () => {
    const sb = await connected();
    const png = Buffer.from([0x89, 0x50, 0x4e, 0x47]);
    handler = (_req, res) =>
      res.end(
        [
          { stdout: "out\n" },
          { result: { "text/plain": "<Figure>", "image/png": png.toString("base64"), "application/json": '{"a":1}' } },
          { error: { name: "ValueError", value: "v" } },
          { end: { status: "error", execution_count: 4, duration_ms: 12 } },
        ]
          .map((x) => JSON.stringify(x) + "\n")
          .join(""),
      );
    const x = await sb.runCode("plot()");
    assert.equal(x.stdout, "out\n");
    assert.equal(x.status, "error");
    assert.equal(x.executionCount, 4);
    assert.deepEqual(x.results[0]!.png, png);
    assert.deepEqual(x.results[0]!.json, { a: 1 });
    assert.equal(x.text, "<Figure>");
    assert.deepEqual(x.error, { name: "ValueError", value: "v" });
  });
});

describe("connection", () => {
  it("failures say where the SDK looked and what to check", async () => {
    const c = new Client({ addr: join(dir, "nothing.sock"), token: "t" });
    const err = await c.health().catch((e: unknown) => e);
    assert.ok(err instanceof ConnectionError, String(err));
    assert.match(err.message, /nothing\.sock/);
    assert.match(err.message, /SIETCH_ADDR/);
  });

  it("a missing token file is reported on the first call that needs it", async () => {
    const c = new Client({ addr: `unix://${sock}`, tokenFile: join(dir, "no-token") });
    handler = json(200, { status: "ok", version: "v", sandboxes: 0, kvm: "ok" });
    assert.equal((await c.health()).status, "ok");
    const err = await Sandbox.list({ client: c }).catch((e: unknown) => e);
    assert.ok(err instanceof UnauthorizedError, String(err));
    assert.match(err.message, /no-token.*SIETCH_TOKEN_FILE/);
  });

  it("addresses take the CLI's forms", () => {
    assert.throws(() => new Client({ addr: "ftp://x", token: "t" }), ConnectionError);
    assert.throws(() => new Client({ addr: "unix://relative", token: "t" }), ConnectionError);
    assert.equal(new Client({ addr: "tcp://127.0.0.1:1", token: "t" }).addr, "tcp://127.0.0.1:1");
  });

  it("an aborted call ends with the signal's reason, also mid-stream", async () => {
    handler = () => {}; // never answers
    const err = await Sandbox.list({ client: client(), signal: AbortSignal.timeout(50) }).catch((e: unknown) => e);
    assert.equal((err as Error).name, "TimeoutError");

    const sb = await connected();
    handler = (_req, res) => res.write('{"stdout":"aGk="}\n'); // then nothing
    const ac = new AbortController();
    const seenOut: string[] = [];
    const p = sb.exec("x", { signal: ac.signal, onStdout: (b) => (seenOut.push(b.toString()), ac.abort(new Error("user gave up"))) });
    const e2 = await p.catch((e: unknown) => e);
    assert.equal((e2 as Error).message, "user gave up");
    assert.deepEqual(seenOut, ["hi"]);
  });
});
