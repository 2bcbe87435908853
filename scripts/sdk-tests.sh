#!/usr/bin/env bash
# sdk-tests.sh: the test suites of the SDKs in other languages, run by
# `make test-sdk` inside scripts/sdk-testenv.sh (which says what the
# environment holds). Each suite runs when its directory exists.
set -euo pipefail
cd "$(dirname "$0")/.."
ran=0
if [ -d sdk/python ]; then
	echo "== Python SDK (sdk/python)"
	# Debian's python3 has python3-pytest; a python3 earlier in PATH
	# (pyenv) may not.
	py=python3
	[ -x /usr/bin/python3 ] && py=/usr/bin/python3
	(cd sdk/python && "$py" -m pytest -q tests)
	ran=$((ran + 1))
fi
if [ -f sdk/typescript/package.json ]; then
	echo "== TypeScript SDK (sdk/typescript)"
	(cd sdk/typescript && npm test --silent)
	ran=$((ran + 1))
fi
if [ -f tools/mcp-interop/package.json ]; then
	echo "== sietch mcp with the official TypeScript MCP client (tools/mcp-interop)"
	(cd tools/mcp-interop && npm test --silent)
	ran=$((ran + 1))
fi
echo "sdk-tests: $ran suites passed"
