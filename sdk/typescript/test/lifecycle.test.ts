// Lifecycle against a real sietchd, on the counter test guest (no agent,
// native speed): create, list, pause, resume, snapshot, restore, fork,
// console, delete; and the service-wide calls.

import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { BadRequestError, Client, NotFoundError, Sandbox, Snapshot, Template, WrongStateError, InUseError } from "../src/index.js";
import { assertShape, noServer, testGuest } from "./env.js";

const made: Sandbox[] = [];
after(async () => {
  for (const sb of made) await sb.delete().catch(() => {});
});

async function create(): Promise<Sandbox> {
  const sb = await Sandbox.create({ image: testGuest, labels: { suite: "typescript" } });
  made.push(sb);
  return sb;
}

describe("service", { skip: noServer }, () => {
  it("health, metrics, the OpenAPI document, images", async () => {
    const c = Client.default();
    const h = await c.health();
    assertShape("Health", h);
    assert.equal(h.status, "ok");
    assert.match(await c.metrics(), /sietch_sandboxes/);
    assert.match(await c.openAPIDocument(), /operationId: createSandbox/);
    const images = await c.listImages();
    for (const i of images) assertShape("Image", i);
    assert.ok(images.some((i) => i.name === testGuest && i.kind === "testguest"));
  });

  it("buildImage refuses a Dockerfile it cannot run, with its line", async () => {
    const c = Client.default();
    const archive = ustar({ Dockerfile: "FROM scratch\nRUN --mount=type=cache,target=/c true\n" });
    await assert.rejects(c.buildImage("refused", archive), (e: unknown) => e instanceof BadRequestError && /Dockerfile:2/.test(e.message) && /--mount/.test(e.message));
    assert.ok(!(await c.listImages()).some((i) => i.name === "refused"));
  });

  it("templates list, and unknown ones are NotFoundError", async () => {
    for (const t of await Template.list()) assertShape("Template", t);
    await assert.rejects(Template.get("no-such-template"), NotFoundError);
  });
});

describe("sandbox lifecycle", { skip: noServer }, () => {
  it("create, info, list, connect, console, delete", async () => {
    const sb = await create();
    assertShape("Sandbox", sb.lastInfo);
    assert.equal(sb.lastInfo.state, "running");
    assert.equal(sb.lastInfo.image, testGuest);
    assert.deepEqual(sb.lastInfo.labels, { suite: "typescript" });

    const listed = await Sandbox.list();
    for (const s of listed) assertShape("Sandbox", s);
    assert.ok(listed.some((s) => s.id === sb.id));

    const again = await Sandbox.connect(sb.id);
    assert.equal((await again.info()).id, sb.id);
    assert.equal(typeof (await sb.console()), "string");

    await sb.delete();
    await assert.rejects(Sandbox.connect(sb.id), NotFoundError);
    await assert.rejects(sb.delete(), NotFoundError);
  });

  it("pause and resume; a second pause is WrongStateError", async () => {
    const sb = await create();
    assert.equal((await sb.pause()).state, "paused");
    await assert.rejects(sb.pause(), WrongStateError);
    assert.equal((await sb.resume()).state, "running");
    assert.equal((await sb.info()).state, "running");
  });

  it("pause to disk suspends; resume restores it under its id", async () => {
    const sb = await create();
    assert.equal((await sb.pause({ toDisk: true })).state, "suspended");
    const r = await sb.resume();
    assert.equal(r.state, "running");
    assert.equal(r.id, sb.id);
  });

  it("snapshot, restore, fork; snapshots list, get, delete", async () => {
    const sb = await create();
    const snap = await sb.snapshot();
    assertShape("Snapshot", snap);
    assert.equal(snap.sandboxId, sb.id);
    assert.equal(snap.kind, "full");
    assert.ok((await sb.listSnapshots()).some((s) => s.id === snap.id));
    assert.ok((await Snapshot.list()).some((s) => s.id === snap.id));
    assert.equal((await Snapshot.get(snap.id)).id, snap.id);

    const restored = await Sandbox.restore(snap);
    made.push(restored);
    assert.equal(restored.lastInfo.state, "running");
    assert.equal(restored.lastInfo.snapshot, snap.id);
    assert.notEqual(restored.id, sb.id);

    // A snapshot a sandbox was restored from cannot go while it lives.
    await assert.rejects(Snapshot.delete(snap.id), InUseError);
    await restored.delete();

    const forks = await sb.fork(2, { snapshot: snap });
    made.push(...forks);
    assert.equal(forks.length, 2);
    for (const f of forks) {
      assertShape("Sandbox", f.lastInfo);
      assert.equal(f.lastInfo.state, "running");
    }
    assert.notEqual(forks[0]!.id, forks[1]!.id);
    for (const f of forks) await f.delete();

    await Snapshot.delete(snap.id);
    await assert.rejects(Snapshot.get(snap.id), NotFoundError);

    const taken = await sb.fork(1); // from a full snapshot taken now
    made.push(...taken);
    assert.equal(taken.length, 1);
  });

  it("await using deletes the sandbox at the end of the block", async () => {
    let id = "";
    {
      await using sb = await Sandbox.create({ image: testGuest });
      id = sb.id;
      assert.equal((await sb.info()).state, "running");
    }
    await assert.rejects(Sandbox.connect(id), NotFoundError);
  });
});

/** A ustar archive of small files (Node has no tar writer of its own). */
function ustar(files: Record<string, string>): Buffer {
  const blocks: Buffer[] = [];
  for (const [name, text] of Object.entries(files)) {
    const data = Buffer.from(text);
    const h = Buffer.alloc(512);
    h.write(name, 0);
    h.write("0000644\0", 100);
    h.write("0000000\0", 108);
    h.write("0000000\0", 116);
    h.write(data.length.toString(8).padStart(11, "0") + "\0", 124);
    h.write("00000000000\0", 136);
    h.write("        ", 148);
    h.write("0", 156);
    h.write("ustar\0" + "00", 257);
    let sum = 0;
    for (const b of h) sum += b;
    h.write(sum.toString(8).padStart(6, "0") + "\0 ", 148);
    blocks.push(h, data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}
