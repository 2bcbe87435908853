// sietch: the TypeScript SDK for sietchd, KVM microVM sandboxes.

export { Client, DEFAULT_ADDR, DEFAULT_TOKEN_FILE, parseAddr } from "./client.js";
export type { Body, CallOptions, ClientOptions, ConnectOptions, ImageBuildOptions } from "./client.js";
export { Sandbox, withSandbox } from "./sandbox.js";
export type { ContextOptions, CreateOptions } from "./sandbox.js";
export { Files, Watcher } from "./files.js";
export type { Mode, ReadOptions } from "./files.js";
export { Ports, Processes } from "./processes.js";
export type { StartOptions } from "./processes.js";
export { ExecSession } from "./session.js";
export { Snapshot, Template } from "./templates.js";
export type { BuildOptions } from "./templates.js";
export type { ExecEvent, ExecOptions, ExecResult } from "./exec.js";
export type { Execution, Result, RunCodeOptions, RunEvent } from "./code.js";
export * from "./errors.js";
export { MODELS } from "./models.js";
export type * from "./models.js";
export { OPERATIONS } from "./operations.js";
