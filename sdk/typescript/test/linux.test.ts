// One Linux sandbox from the test template, a handful of fat steps: every
// guest syscall is emulated on the test machines, so each call takes seconds.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync, mkdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { after, before, describe, it } from "node:test";
import { BadRequestError, ConflictError, NotFoundError, Sandbox, type ExecEvent, type RunEvent, type WatchEvent } from "../src/index.js";
import { assertShape, noServer, noTemplate } from "./env.js";

let sb: Sandbox;
const made: Sandbox[] = [];

describe("a Linux sandbox from the template", { skip: noServer ?? noTemplate }, () => {
  before(async () => {
    sb = await Sandbox.create({ template: process.env.SIETCH_TEST_TEMPLATE!, env: { SANDBOX_WIDE: "yes" } });
    made.push(sb);
    assert.equal(sb.lastInfo.agent, true);
  });
  after(async () => {
    for (const s of made) await s.delete().catch(() => {});
  });

  it("exec: stdout, stderr, exit code, stdin, env and cwd", async () => {
    const r = await sb.exec('cat; echo "$FOO $SANDBOX_WIDE"; pwd; echo oops >&2; exit 3', { stdin: "piped\n", env: { FOO: "bar" }, cwd: "/tmp" });
    assert.equal(r.stdout, "piped\nbar yes\n/tmp\n");
    assert.equal(r.stderr, "oops\n");
    assert.equal(r.exitCode, 3);
    assert.equal(r.timedOut, false);

    const t = await sb.exec("sleep", { args: ["30"], timeoutS: 1 });
    assert.equal(t.timedOut, true);
    assert.notEqual(t.exitCode, 0);
  });

  it("desktop calls on an image with no X server: the agent says so", async () => {
    await assert.rejects(sb.screenshot(), (e: unknown) => e instanceof ConflictError && /X server/.test((e as Error).message));
    await assert.rejects(sb.vnc(), (e: unknown) => e instanceof ConflictError && /X server/.test((e as Error).message));
    await assert.rejects(sb.openUrl("javascript:alert(1)"), (e: unknown) => e instanceof BadRequestError && /URL/.test((e as Error).message));
  });

  it("execStream: events in the order the command made them", async () => {
    const events: ExecEvent[] = [];
    for await (const ev of sb.execStream("echo one; sleep 0.3; echo two >&2; sleep 0.3; echo three")) events.push(ev);
    const seq = events.map((e) => (e.type === "exit" ? `exit ${e.exit.code}` : e.type === "dropped" ? "dropped" : `${e.type} ${e.data.toString().trim()}`));
    assert.deepEqual(seq, ["stdout one", "stderr two", "stdout three", "exit 0"]);
  });

  it("execInteractive: stdin streamed in, output and exit back", async () => {
    const out: Buffer[] = [];
    const s = await sb.execInteractive("tr a-z A-Z", { onStdout: (b) => out.push(b) });
    await s.write("hello ");
    await s.write("world\n");
    await s.closeStdin();
    assert.equal((await s.wait()).code, 0);
    assert.equal(Buffer.concat(out).toString(), "HELLO WORLD\n");
  });

  it("runCode: state persists across runs; results, output and errors", async () => {
    const first = await sb.runCode("x = 5\nprint('hi')");
    assert.equal(first.status, "ok");
    assert.equal(first.stdout, "hi\n");
    const events: RunEvent[] = [];
    for await (const ev of sb.runCodeStream("x * 2")) events.push(ev);
    assert.deepEqual(
      events.map((e) => e.type),
      ["result", "end"],
    );
    assert.equal(events[0]!.type === "result" && events[0]!.result.text, "10");
    const third = await sb.runCode("1/0");
    assert.equal(third.status, "error");
    assert.equal(third.error?.name, "ZeroDivisionError");
    const contexts = await sb.listContexts();
    for (const c of contexts) assertShape("Context", c);
    assert.ok(contexts.some((c) => c.id === "default" && c.language === "python"));
  });

  it("files: a few MiB streamed both ways, stat, list, rename, remove, mkdir, watch", async () => {
    const dir = "/tmp/ts-sdk";
    assertShape("FileInfo", await sb.files.mkdir(`${dir}/sub`, { parents: true }));

    const watcher = await sb.files.watch(dir);
    const seen: WatchEvent[] = [];
    const watching = (async () => {
      for await (const ev of watcher) {
        seen.push(ev);
        if (ev.type === "create" && ev.path === `${dir}/big.bin`) break;
      }
    })();

    const chunk = Buffer.alloc(256 << 10);
    for (let i = 0; i < chunk.length; i++) chunk[i] = (i * 7 + 3) & 0xff;
    const n = 12; // 3 MiB
    const want = createHash("sha256");
    async function* source() {
      for (let i = 0; i < n; i++) {
        chunk[0] = i;
        want.update(chunk);
        yield Buffer.from(chunk);
      }
    }
    await sb.files.write(`${dir}/big.bin`, source(), { mode: 0o600 });
    await watching;
    assert.ok(seen.some((e) => e.type === "create" && e.path === `${dir}/big.bin`), JSON.stringify(seen));
    watcher.close();

    const got = createHash("sha256");
    let size = 0;
    for await (const b of (await sb.files.read(`${dir}/big.bin`, { format: "stream" })) as Readable) {
      got.update(b as Buffer);
      size += (b as Buffer).length;
    }
    assert.equal(size, n * chunk.length);
    assert.equal(got.digest("hex"), want.digest("hex"));

    const st = await sb.files.stat(`${dir}/big.bin`);
    assert.equal(st.size, n * chunk.length);
    assert.equal(st.mode, "0600");
    assert.equal(st.type, "file");

    await sb.files.write(`${dir}/note.txt`, "héllo\n");
    assert.equal(await sb.files.read(`${dir}/note.txt`), "héllo\n");
    assert.equal((await sb.files.rename(`${dir}/note.txt`, `${dir}/sub/note.txt`)).name, "note.txt");
    const entries = await sb.files.list(dir);
    assert.deepEqual(entries.map((e) => `${e.name}:${e.type}`), ["big.bin:file", "sub:dir"]);

    await assert.rejects(sb.files.remove(`${dir}/sub`), ConflictError); // not empty
    await sb.files.remove(`${dir}/sub`, { recursive: true });
    assert.equal(await sb.files.exists(`${dir}/sub`), false);
    await assert.rejects(sb.files.read(`${dir}/nothing`), NotFoundError);
  });

  it("tar: upload a tree, download it back", async () => {
    const local = mkdtempSync(join(tmpdir(), "sietch-ts-tar-"));
    try {
      mkdirSync(join(local, "tree/a"), { recursive: true });
      writeFileSync(join(local, "tree/a/one.txt"), "one\n");
      writeFileSync(join(local, "tree/two.txt"), "two\n");
      const archive = execFileSync("tar", ["-C", join(local, "tree"), "-cf", "-", "."]);
      const res = await sb.files.uploadTar("/tmp/ts-tree", archive);
      assertShape("TarResult", res);
      assert.equal(res.files, 2);
      assert.equal(await sb.files.read("/tmp/ts-tree/a/one.txt"), "one\n");

      const chunks: Buffer[] = [];
      for await (const b of await sb.files.downloadTar("/tmp/ts-tree")) chunks.push(b as Buffer);
      writeFileSync(join(local, "back.tar"), Buffer.concat(chunks));
      const names = execFileSync("tar", ["-tf", join(local, "back.tar")]).toString().split("\n").filter(Boolean);
      assert.ok(names.some((n) => n.replace(/^\.\//, "") === "a/one.txt"), names.join(" "));
      execFileSync("tar", ["-C", local, "-xf", join(local, "back.tar")]);
      assert.equal(readFileSync(join(local, "two.txt"), "utf8"), "two\n");
    } finally {
      rmSync(local, { recursive: true, force: true });
    }
  });

  it("background processes: start, list, output, signal, wait, delete", async () => {
    const p = await sb.processes.start("echo started; sleep 60");
    assert.ok((await sb.processes.list()).some((x) => x.id === p.id));
    for await (const ev of sb.processes.output(p.id)) {
      if (ev.type === "stdout") {
        assert.equal(ev.data.toString(), "started\n");
        break;
      }
    }
    await sb.processes.signal(p.id, "TERM");
    const done = await sb.processes.wait(p.id);
    assertShape("Process", done);
    assert.equal(done.state, "exited");
    assert.equal(done.exit?.signal, "SIGTERM");
    await sb.processes.delete(p.id);
    await assert.rejects(sb.processes.get(p.id), NotFoundError);
  });

  it("ports: forward, list, delete", async () => {
    const p = await sb.ports.forward(8080);
    assertShape("Port", p);
    assert.equal(p.guestPort, 8080);
    assert.ok(p.hostPort > 0);
    assert.deepEqual(await sb.ports.list(), [p]);
    await sb.ports.delete(p.hostPort);
    assert.deepEqual(await sb.ports.list(), []);
    await assert.rejects(sb.ports.delete(p.hostPort), NotFoundError);
  });

  it("snapshot and fork keep the guest's state", async () => {
    const snap = await sb.snapshot();
    const [fork] = await sb.fork(1, { snapshot: snap });
    made.push(fork!);
    const x = await fork!.runCode("x + 1");
    assert.equal(x.text, "6");
    assert.equal(await fork!.files.exists("/tmp/ts-sdk/big.bin"), true);
  });
});
