#!/usr/bin/env bash
# deps.sh PACKAGE...: install what the build and the tests need and is not
# there yet: the named Debian packages, the Go modules, the pinned npm
# packages. A second run on a ready machine changes nothing and needs no
# network for apt.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for p in "$@"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "deps: these Debian packages are missing and installing them needs root: ${missing[*]}" >&2
		echo "deps: run as root (sudo make deps)" >&2
		exit 1
	fi
	echo "deps: installing ${missing[*]}"
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
else
	echo "deps: the Debian packages are installed"
fi

go=${GO:-go}
"$go" mod download

command -v npm >/dev/null || { echo "deps: npm (Node.js 20.19 or later) is needed for the OpenAPI lint and the TypeScript SDK; install Node.js" >&2; exit 1; }
# Every npm project of the tree, each pinned by its package-lock.json.
for dir in tools/openapi-lint tools/mcp-interop sdk/typescript; do
	lock=$dir/package-lock.json
	[ -f "$lock" ] || continue
	stamp=$dir/node_modules/.sietch-lock.sha256
	if [ -f "$stamp" ] && [ "$(sha256sum <"$lock")" = "$(cat "$stamp")" ]; then
		echo "deps: the npm packages of $dir are installed"
	else
		(cd "$dir" && npm ci --no-audit --no-fund)
		sha256sum <"$lock" >"$stamp"
	fi
done
