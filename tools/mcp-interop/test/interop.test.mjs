// sietch mcp, driven over stdio by the official TypeScript MCP client: a
// client we did not write. Run inside scripts/sdk-testenv.sh, which
// exports SIETCH_BIN and the connection (SIETCH_STATE_DIR, SIETCH_ADDR,
// SIETCH_TOKEN_FILE), and SIETCH_TEST_TEMPLATE for the Linux flow.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";

const bin = process.env.SIETCH_BIN;
const template = process.env.SIETCH_TEST_TEMPLATE;
// Every guest syscall is emulated on some hosts: an exec takes seconds.
const callOptions = { timeout: 300_000 };

async function connect() {
  const transport = new StdioClientTransport({
    command: bin,
    args: ["mcp"],
    env: { ...process.env },
    stderr: "inherit",
  });
  const client = new Client({ name: "sietch-mcp-interop", version: "1.0.0" });
  await client.connect(transport);
  return client;
}

function textOf(result) {
  return result.content.filter((c) => c.type === "text").map((c) => c.text).join("\n");
}

// call calls a tool and fails on a tool error, saying what it said.
async function call(client, name, args) {
  const result = await client.callTool({ name, arguments: args }, undefined, callOptions);
  assert.ok(!result.isError, `${name} ${JSON.stringify(args)}: tool error: ${textOf(result)}`);
  return result;
}

function sandboxIds() {
  const out = JSON.parse(execFileSync(bin, ["ls", "--json"], { encoding: "utf8" }));
  const list = Array.isArray(out) ? out : out.sandboxes ?? [];
  return list.map((sb) => sb.id);
}

test("sietch mcp lists its tools with schemas", { skip: !bin && "SIETCH_BIN is not set: run inside scripts/sdk-testenv.sh" }, async () => {
  const client = await connect();
  try {
    assert.equal(client.getServerVersion()?.name, "sietch");
    const { tools } = await client.listTools();
    const names = tools.map((t) => t.name).sort();
    for (const want of ["computer", "create_sandbox", "delete_sandbox", "exec", "fork", "list_directory", "list_sandboxes", "open_url", "read_file", "restore", "run_code", "screenshot", "snapshot", "write_file"]) {
      assert.ok(names.includes(want), `tool ${want} missing from ${names}`);
    }
    for (const t of tools) {
      assert.equal(t.inputSchema.type, "object", `${t.name}: input schema`);
      assert.ok(t.description.length > 40, `${t.name}: description ${t.description}`);
    }
    const exec = tools.find((t) => t.name === "exec");
    assert.deepEqual(exec.inputSchema.required, ["sandbox_id"]);
    assert.ok(exec.inputSchema.properties.command.description.includes("sh -c"));
    // A tool error, not a protocol failure, for a sandbox that is not there.
    const res = await client.callTool({ name: "exec", arguments: { sandbox_id: "sb-none", command: "true" } });
    assert.equal(res.isError, true);
    assert.match(textOf(res), /not_found/);
  } finally {
    await client.close();
  }
});

test("a Linux sandbox through sietch mcp: exec, run_code, files, gone at the end", {
  skip: (!bin && "SIETCH_BIN is not set: run inside scripts/sdk-testenv.sh") ||
    (!template && "SIETCH_TEST_TEMPLATE is not set: the Linux template was not built (SIETCH_TEST_NO_TEMPLATE=1?)"),
}, async () => {
  const client = await connect();
  let id;
  try {
    const created = await call(client, "create_sandbox", { template, labels: { suite: "mcp-interop" } });
    id = created.structuredContent.sandbox.id;
    assert.match(id, /^sb-/);
    assert.ok(sandboxIds().includes(id), `${id} is not in sietch ls`);

    const exec = await call(client, "exec", { sandbox_id: id, command: "echo hi; echo oops >&2; exit 3" });
    assert.equal(exec.structuredContent.stdout, "hi\n");
    assert.equal(exec.structuredContent.stderr, "oops\n");
    assert.equal(exec.structuredContent.exit_code, 3);
    assert.match(textOf(exec), /exit code 3/);

    const run = await call(client, "run_code", { sandbox_id: id, code: "print(6*7)" });
    assert.equal(run.structuredContent.status, "ok");
    assert.equal(run.structuredContent.stdout.trim(), "42");

    const body = "line one\nünïcödé\n";
    await call(client, "write_file", { sandbox_id: id, path: "/root/interop/note.txt", content: body });
    const read = await call(client, "read_file", { sandbox_id: id, path: "/root/interop/note.txt" });
    assert.equal(read.structuredContent.content, body);
    assert.equal(read.structuredContent.encoding, "utf-8");
    const ls = await call(client, "list_directory", { sandbox_id: id, path: "/root/interop" });
    assert.deepEqual(ls.structuredContent.entries.map((e) => e.name), ["note.txt"]);
  } finally {
    await client.close();
  }
  // Closing the client ends sietch mcp, which deletes the session's sandbox.
  const deadline = Date.now() + 30_000;
  while (sandboxIds().includes(id)) {
    assert.ok(Date.now() < deadline, `${id} still exists after the MCP session ended: ${sandboxIds()}`);
    await new Promise((r) => setTimeout(r, 200));
  }
});
