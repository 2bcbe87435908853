// Package agent is the guest agent's server: exec, files, ports, identity and health over HTTP/1.1 on a vsock stream.
package agent

// Wire protocol: its types, codes and the host-side client are package
// wire/agentproto's; docs/AGENT.md has the full text, with curl examples.
//
// Transport. The agent listens on vsock port agentproto.Port (1024) in
// the guest; each stream carries HTTP/1.1. Request headers are limited to
// 16 KiB and must arrive within 30 s; bodies have no deadline.
//
// Errors. Every refusal is a 4xx (or 5xx) with the envelope of package
// httpjson, {"error": {"code": "bad_request", "message": "..."}}; codes:
// invalid_json and unknown_field 400 (a body that does not decode),
// bad_request 400 (a value refused), forbidden 403, not_found 404,
// method_not_allowed 405, conflict 409, body_too_large 413,
// too_many_requests 429, internal 500, not_implemented 501,
// bad_gateway 502. JSON bodies are limited to 64 KiB and must hold exactly
// one object with only known fields.
//
// Exec.
//
//	POST /v1/exec {id?, cmd, args, env{}, cwd, user, stdin, tty{rows,cols}?, timeout_ms}
//	  4xx before anything runs (no such command, bad cwd, unknown user, id in use)
//	  200 application/x-ndjson, one event per line, flushed as produced:
//	    {"id":"...","pid":N}                 first
//	    {"stdout":"<base64>"} {"stderr":"<base64>"}   in order per stream
//	    {"exit_code":N} | {"signal":"SIGKILL","timed_out":true} | {"error":"..."}   last
//	POST /v1/exec/{id}/stdin   body streamed to stdin; its end closes stdin (on a TTY: ^D)
//	POST /v1/exec/{id}/signal  {"signal":"SIGTERM"} to the process group; 204
//	POST /v1/exec/{id}/resize  {"rows":R,"cols":C} of the PTY; 204
//
// The process runs in its own process group (a new session on a TTY);
// signals and the timeout's SIGKILL go to the whole group. Output is
// drained after exit before the last event, for up to 2 s while a
// background child still holds the pipes. A client that goes away kills
// the process.
//
// Files. Paths are absolute guest paths inside Config.Root; ".." elements
// are refused (403), as is anything outside the root, and symlinks are
// followed only while they stay inside it (os.Root).
//
//	PUT    /v1/files?path=&mode=        body → temp file beside path, fsync, rename; 200 agentproto.FileInfo
//	GET    /v1/files?path=              file bytes; mode in X-Sietch-Mode (octal)
//	GET    /v1/stat?path=               agentproto.FileInfo of path itself (lstat)
//	GET    /v1/list?path=               {"entries":[agentproto.FileInfo...]} sorted by name
//	POST   /v1/mkdir?path=&mode=&parents=   200 agentproto.FileInfo
//	DELETE /v1/files?path=&recursive=   204
//
// FileInfo: {"name","type":"file|dir|symlink|other","size","mode":"0755","mtime","target"?}.
//
// Ports. POST /v1/ports/{port}/connect with "Connection: Upgrade" and
// "Upgrade: tcp" answers 101 and relays the stream to 127.0.0.1:port,
// passing on half-closes; 502 if the port refuses.
//
// agentproto.Health and shutdown. GET /v1/health → {"status":"ok","uptime_s",
// "load1","mem_total","mem_available","disk_total","disk_free","cpus",
// "execs"}; POST /v1/shutdown {"poweroff":bool} → 202, then
// Config.Shutdown (501 without one).
