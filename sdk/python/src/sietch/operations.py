"""Which SDK method implements each operation of api/openapi.yaml (by
operationId). A test fails when an operation has no entry, an entry names
no operation, or the method does not exist: the SDK cannot drift from the
API unnoticed."""

from __future__ import annotations

OPERATIONS: dict[str, str] = {
    "getHealth": "Client.health",
    "getOpenAPIDocument": "Client.openapi",
    "getMetrics": "Client.metrics",
    "createSandbox": "Sandbox.create",  # and Sandbox.restore (from a snapshot)
    "listSandboxes": "Sandbox.list",
    "getSandbox": "Sandbox.info",  # and Sandbox.connect
    "deleteSandbox": "Sandbox.delete",
    "pauseSandbox": "Sandbox.pause",
    "resumeSandbox": "Sandbox.resume",
    "createSnapshot": "Sandbox.snapshot",
    "listSnapshots": "Sandbox.snapshots",
    "getSandboxStats": "Sandbox.stats",
    "getSandboxNetwork": "Sandbox.network",
    "setSandboxNetwork": "Sandbox.set_network",
    "forkSandbox": "Sandbox.fork",
    "execCommand": "Sandbox.exec",  # and exec_stream, Processes.start, Sandbox.exec_interactive
    "writeFile": "Files.write",
    "readFile": "Files.open",  # and Files.read, Files.read_text
    "removeFile": "Files.remove",
    "listFiles": "Files.list",
    "statFile": "Files.stat",
    "makeDirectory": "Files.mkdir",
    "renameFile": "Files.rename",
    "downloadTree": "Files.download_tar",
    "uploadTree": "Files.upload_tar",
    "watchDirectory": "Files.watch",
    "forwardPort": "Ports.forward",
    "listPortForwards": "Ports.list",
    "deletePortForward": "Ports.delete",
    "getConsole": "Sandbox.console",  # and Sandbox.follow_console
    "listProcesses": "Processes.list",
    "getProcess": "Processes.get",
    "deleteProcess": "Processes.delete",
    "processOutput": "Processes.output",
    "signalProcess": "Processes.signal",
    "waitProcess": "Processes.wait",
    "createContext": "Contexts.create",
    "listContexts": "Contexts.list",
    "deleteContext": "Contexts.delete",
    "runCode": "Sandbox.run_code",  # and Sandbox.run_code_stream
    "interruptContext": "Contexts.interrupt",
    "restartContext": "Contexts.restart",
    "listImages": "Client.images",
    "buildImage": "Client.build_image",
    "getDesktop": "Sandbox.desktop",
    "takeScreenshot": "Sandbox.screenshot",
    "sendInput": "Sandbox.input",
    "serveVNC": "Sandbox.vnc",
    "openURL": "Sandbox.open_url",
    "buildTemplate": "Template.build",
    "listTemplates": "Template.list",
    "getTemplate": "Template.get",
    "deleteTemplate": "Template.delete",
    "listAllSnapshots": "Client.snapshots",
    "getSnapshot": "Client.get_snapshot",
    "deleteSnapshot": "Client.delete_snapshot",
}
