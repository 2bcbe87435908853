// sietch code-context driver for node: one long-lived vm context that runs
// code sent by the guest agent and keeps its state between runs. Node's
// standard library only. The same protocol as python.py: a JSON request
// per line on fd 3, a JSON event per line on fd 4, the agent's marker on
// fds 1 and 2 before each end event; SIGINT interrupts the code running
// (the agent sends it only after the driver's begin event).
'use strict';
const fs = require('fs');
const vm = require('vm');
const util = require('util');
const readline = require('readline');

const marker = process.env.SIETCH_CONTEXT_MARKER || '';
delete process.env.SIETCH_CONTEXT_MARKER;
function emit(event) {
  fs.writeSync(4, JSON.stringify(event) + '\n');
}
const writer = (name) => (...args) => emit({ [name]: util.format(...args) + '\n' });
const sandbox = {
  console: {
    log: writer('stdout'), info: writer('stdout'), debug: writer('stdout'),
    warn: writer('stderr'), error: writer('stderr'),
  },
  require, process, Buffer, URL, TextEncoder, TextDecoder,
  setTimeout, setInterval, setImmediate, clearTimeout, clearInterval, clearImmediate,
};
sandbox.globalThis = sandbox;
const context = vm.createContext(sandbox);

const mimes = [
  ['_repr_html_', 'text/html'], ['_repr_markdown_', 'text/markdown'],
  ['_repr_svg_', 'image/svg+xml'], ['_repr_png_', 'image/png'], ['_repr_json_', 'application/json'],
];
function bundle(value) {
  const data = { 'text/plain': util.inspect(value) };
  if (value !== null && typeof value === 'object') {
    for (const [method, mime] of mimes) {
      if (typeof value[method] !== 'function') continue;
      try {
        let out = value[method]();
        if (out === undefined || out === null) continue;
        if (Buffer.isBuffer(out) || out instanceof Uint8Array) out = Buffer.from(out).toString('base64');
        else if (mime === 'application/json') out = JSON.stringify(out);
        data[mime] = out;
      } catch (e) { /* a representation that fails is left out */ }
    }
  }
  return data;
}

let count = 0;
async function run(line) {
  count++;
  let status = 'ok';
  try {
    const req = JSON.parse(line);
    emit({ begin: {} }); // SIGINT from now on interrupts this cell
    let value = vm.runInContext(req.code || '', context, { filename: '<cell>', breakOnSigint: true });
    if (value && typeof value.then === 'function') value = await value;
    if (value !== undefined) emit({ result: bundle(value) });
  } catch (e) {
    status = 'error';
    const name = (e && e.name) || 'Error';
    // The driver's own frames are no help to whoever wrote the cell.
    const stack = String((e && e.stack) || e).split('\n')
      .filter((l) => !l.startsWith('    at ') || l.includes('<cell>')).join('\n');
    emit({ error: { name, value: (e && e.message) || String(e), traceback: stack } });
  }
  for (const fd of [1, 2]) {
    try { fs.writeSync(fd, marker); } catch (e) { /* nobody reads */ }
  }
  emit({ end: { status, execution_count: count } });
}

process.on('SIGINT', () => {}); // between runs an interrupt interrupts nothing
let queue = Promise.resolve();
readline.createInterface({ input: fs.createReadStream(null, { fd: 3 }) })
  .on('line', (line) => { queue = queue.then(() => run(line)); })
  .on('close', () => queue.then(() => process.exit(0)));
emit({ ready: { pid: process.pid, version: process.version } });
