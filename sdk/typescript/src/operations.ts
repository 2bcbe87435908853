// OPERATIONS: every operation of sietchd's API (its operationId in
// api/openapi.yaml) and the SDK method that makes it. "Class.method" is a
// static method, "Class#method" an instance one. A test checks the table
// against the document both ways and that each method exists.

export const OPERATIONS: Readonly<Record<string, string>> = Object.freeze({
  getHealth: "Client#health",
  getOpenAPIDocument: "Client#openAPIDocument",
  getMetrics: "Client#metrics",
  listImages: "Client#listImages",
  buildImage: "Client#buildImage",
  getDesktop: "Sandbox#desktop",
  takeScreenshot: "Sandbox#screenshot",
  sendInput: "Sandbox#input",
  serveVNC: "Sandbox#vnc",
  openURL: "Sandbox#openUrl",

  createSandbox: "Sandbox.create",
  listSandboxes: "Sandbox.list",
  getSandbox: "Sandbox#info",
  deleteSandbox: "Sandbox#delete",
  pauseSandbox: "Sandbox#pause",
  resumeSandbox: "Sandbox#resume",
  createSnapshot: "Sandbox#snapshot",
  listSnapshots: "Sandbox#listSnapshots",
  getSandboxStats: "Sandbox#stats",
  getSandboxNetwork: "Sandbox#network",
  setSandboxNetwork: "Sandbox#setNetwork",
  forkSandbox: "Sandbox#fork",
  getConsole: "Sandbox#console",
  execCommand: "Sandbox#exec",

  writeFile: "Files#write",
  readFile: "Files#read",
  removeFile: "Files#remove",
  listFiles: "Files#list",
  statFile: "Files#stat",
  makeDirectory: "Files#mkdir",
  renameFile: "Files#rename",
  downloadTree: "Files#downloadTar",
  uploadTree: "Files#uploadTar",
  watchDirectory: "Files#watch",

  forwardPort: "Ports#forward",
  listPortForwards: "Ports#list",
  deletePortForward: "Ports#delete",

  listProcesses: "Processes#list",
  getProcess: "Processes#get",
  deleteProcess: "Processes#delete",
  processOutput: "Processes#output",
  signalProcess: "Processes#signal",
  waitProcess: "Processes#wait",

  createContext: "Sandbox#createContext",
  listContexts: "Sandbox#listContexts",
  deleteContext: "Sandbox#deleteContext",
  runCode: "Sandbox#runCode",
  interruptContext: "Sandbox#interruptContext",
  restartContext: "Sandbox#restartContext",

  buildTemplate: "Template.build",
  listTemplates: "Template.list",
  getTemplate: "Template.get",
  deleteTemplate: "Template.delete",

  listAllSnapshots: "Snapshot.list",
  getSnapshot: "Snapshot.get",
  deleteSnapshot: "Snapshot.delete",
});
