// What the tests know about their environment (scripts/sdk-testenv.sh sets it).

import { readFileSync } from "node:fs";

export interface OpenAPI {
  paths: Record<string, Record<string, { operationId?: string }>>;
  components: { schemas: Record<string, Schema> };
}

export interface Schema {
  type?: string;
  format?: string;
  $ref?: string;
  properties?: Record<string, Schema>;
  required?: string[];
  items?: Schema;
  additionalProperties?: Schema | boolean;
  enum?: string[];
}

/** The API document bundled to JSON, or why there is none. */
export function openapi(): OpenAPI | string {
  const file = process.env.SIETCH_OPENAPI_JSON;
  if (!file) return "SIETCH_OPENAPI_JSON is unset (run under scripts/sdk-testenv.sh)";
  return JSON.parse(readFileSync(file, "utf8")) as OpenAPI;
}

/** Why the tests against a real sietchd cannot run, if they cannot. */
export const noServer = process.env.SIETCH_ADDR ? undefined : "SIETCH_ADDR is unset: no sietchd to test against (run under scripts/sdk-testenv.sh)";

/** Why the Linux tests cannot run, if they cannot. */
export const noTemplate = process.env.SIETCH_TEST_TEMPLATE
  ? undefined
  : "SIETCH_TEST_TEMPLATE is unset: no Linux template to test against (scripts/sdk-testenv.sh without SIETCH_TEST_NO_TEMPLATE=1)";

export const testGuest = process.env.SIETCH_TEST_TESTGUEST ?? "counter";

import assert from "node:assert/strict";
import { fieldsOf, type ModelName } from "../src/models.js";

/** Asserts that a decoded answer of sietchd has every field its schema requires. */
export function assertShape(model: ModelName, value: object): void {
  const doc = openapi();
  if (typeof doc === "string") return;
  const schema = doc.components.schemas[model]!;
  const names = new Map(fieldsOf(model).map((f) => [f.wire, f]));
  for (const wire of schema.required ?? []) {
    const f = names.get(wire);
    assert.ok(f, `${model}.${wire} is required but the SDK does not know it`);
    const v = (value as Record<string, unknown>)[f.name];
    assert.notEqual(v, undefined, `sietchd's ${model} lacks the required ${wire}: ${JSON.stringify(value)}`);
    if (f.kind === "model" && !f.array) assertShape(f.model!, v as object);
    if (f.kind === "model" && f.array) for (const x of v as object[]) assertShape(f.model!, x);
  }
}
