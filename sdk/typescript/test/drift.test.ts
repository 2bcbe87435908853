// No drift between the SDK and api/openapi.yaml: every operation has its
// method, every model its fields, every error code its class.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import * as sdk from "../src/index.js";
import { ERROR_CLASSES, MODELS, OPERATIONS, SietchError } from "../src/index.js";
import { fieldsOf, type ModelName } from "../src/models.js";
import { type Schema, openapi } from "./env.js";

const doc = openapi();
const skip = typeof doc === "string" ? doc : undefined;

function operationIds(): string[] {
  if (typeof doc === "string") return [];
  const ids: string[] = [];
  for (const item of Object.values(doc.paths)) for (const op of Object.values(item)) if (op && typeof op === "object" && op.operationId) ids.push(op.operationId);
  return ids;
}

function schemas(): Record<string, Schema> {
  return typeof doc === "string" ? {} : doc.components.schemas;
}

describe("OPERATIONS", { skip }, () => {
  it("names a method for every operationId of the API", () => {
    const missing = operationIds().filter((id) => !(id in OPERATIONS));
    assert.deepEqual(missing, [], `operations without an SDK method: ${missing.join(", ")}`);
  });

  it("names no operationId the API does not have", () => {
    const ids = new Set(operationIds());
    const extra = Object.keys(OPERATIONS).filter((id) => !ids.has(id));
    assert.deepEqual(extra, [], `OPERATIONS entries for no operation: ${extra.join(", ")}`);
  });

  it("names methods that exist", () => {
    const exports = sdk as unknown as Record<string, { prototype?: Record<string, unknown> } & Record<string, unknown>>;
    for (const [op, ref] of Object.entries(OPERATIONS)) {
      const m = /^(\w+)([.#])(\w+)$/.exec(ref);
      assert.ok(m, `${op}: ${ref} is not Class.method or Class#method`);
      const cls = exports[m[1]!];
      assert.equal(typeof cls, "function", `${op}: no exported class ${m[1]}`);
      const owner = m[2] === "." ? cls : cls!.prototype!;
      assert.equal(typeof owner[m[3]!], "function", `${op}: ${ref} is not a method`);
    }
  });
});

describe("MODELS", { skip }, () => {
  it("has an entry for every object schema of the API", () => {
    const objects = Object.entries(schemas()).filter(([, s]) => s.properties).map(([n]) => n);
    const missing = objects.filter((n) => !(n in MODELS));
    assert.deepEqual(missing, [], `schemas without a model: ${missing.join(", ")}`);
  });

  for (const name of Object.keys(MODELS) as ModelName[]) {
    it(`${name} has the schema's fields, of the schema's kinds`, () => {
      const schema = schemas()[name];
      assert.ok(schema?.properties, `the API has no object schema ${name}`);
      const fields = fieldsOf(name);
      assert.deepEqual(fields.map((f) => f.wire).sort(), Object.keys(schema.properties).sort(), `${name}'s fields`);
      for (const f of fields) {
        const p: Schema = schema.properties[f.wire]!;
        const ref: string | undefined = (p.$ref ?? p.items?.$ref)?.split("/").at(-1);
        const isObjectRef = ref !== undefined && schemas()[ref]?.properties !== undefined;
        if (f.kind === "model") {
          assert.equal(ref, f.model, `${name}.${f.wire} refers to ${ref}`);
          assert.equal(f.array, p.type === "array", `${name}.${f.wire}: array or not`);
        } else {
          assert.ok(!isObjectRef, `${name}.${f.wire} is a ${ref}: the table must say so`);
        }
        assert.equal(f.kind === "date", p.format === "date-time", `${name}.${f.wire}: date-time or not`);
        assert.equal(f.kind === "map", typeof p.additionalProperties === "object", `${name}.${f.wire}: a map or not`);
      }
    });
  }
});

describe("errors", { skip }, () => {
  it("have one class per stable code of the API", () => {
    const codes = schemas()["Error"]!.properties!["code"]!.enum!;
    assert.deepEqual(Object.keys(ERROR_CLASSES).sort(), [...codes].sort());
    const classes = new Set(Object.values(ERROR_CLASSES));
    assert.equal(classes.size, codes.length, "each code has its own class");
    for (const cls of classes) assert.ok(cls.prototype instanceof SietchError);
  });
});
