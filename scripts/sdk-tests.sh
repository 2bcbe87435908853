#!/usr/bin/env bash
# sdk-tests.sh: the test suites of the SDKs in other languages, run by
# `make test-sdk` inside scripts/sdk-testenv.sh (which says what the
# environment holds). Each suite runs when its directory exists; all run
# even when one fails, and the script fails naming those that did.
set -uo pipefail
cd "$(dirname "$0")/.."
ran=0
failed=()
suite() {
	local name=$1
	shift
	echo "== $name"
	ran=$((ran + 1))
	"$@" || failed+=("$name")
}
if [ -d sdk/python ]; then
	# Debian's python3 has python3-pytest; a python3 earlier in PATH
	# (pyenv) may not.
	py=python3
	[ -x /usr/bin/python3 ] && py=/usr/bin/python3
	suite "Python SDK (sdk/python)" sh -c "cd sdk/python && $py -m pytest -q tests"
fi
if [ -f sdk/typescript/package.json ]; then
	suite "TypeScript SDK (sdk/typescript)" sh -c "cd sdk/typescript && npm test --silent"
fi
if [ -f tools/mcp-interop/package.json ]; then
	suite "sietch mcp with the official TypeScript MCP client (tools/mcp-interop)" sh -c "cd tools/mcp-interop && npm test --silent"
fi
if [ ${#failed[@]} -gt 0 ]; then
	printf 'sdk-tests: %d of %d suites failed:\n' ${#failed[@]} $ran
	printf '  %s\n' "${failed[@]}"
	exit 1
fi
echo "sdk-tests: $ran suites passed"
