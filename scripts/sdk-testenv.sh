#!/usr/bin/env bash
# sdk-testenv.sh CMD [ARG...]: run CMD against a real sietchd of this tree
# (the SDK and MCP tests in other languages use it), then tear it down.
#
# It starts bin/sietchd on a fresh state directory with two images:
#   default  the Linux image from build/ (kernel, initramfs, rootfs.ext4)
#   counter  the counter test guest (no agent; native speed: for lifecycle,
#            snapshot, restore and fork tests)
# builds the Linux template "sdk" once (with a warm python context) unless
# SIETCH_TEST_NO_TEMPLATE=1, and runs CMD with:
#   SIETCH_STATE_DIR      the state directory (the SDKs' default connection:
#                         DIR/sietchd.sock and DIR/token)
#   SIETCH_ADDR           unix://DIR/sietchd.sock
#   SIETCH_TOKEN_FILE     DIR/token
#   SIETCH_TEST_TEMPLATE  sdk (unset with SIETCH_TEST_NO_TEMPLATE=1)
#   SIETCH_TEST_TESTGUEST counter
#   SIETCH_OPENAPI_JSON   api/openapi.yaml bundled to JSON (for schema checks)
#   SIETCH_BIN            the sietch CLI
# Every vmm it started is killed on exit. Needs: make all kernel initramfs
# image, and tools/openapi-lint's npm packages (make deps).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
[ $# -gt 0 ] || { echo "usage: $0 CMD [ARG...]" >&2; exit 2; }
for f in bin/sietchd bin/vmm bin/sietch build/kernel/vmlinux build/initramfs/initramfs.cpio build/rootfs.ext4; do
	[ -e "$f" ] || { echo "sdk-testenv: $f is missing; run 'make all kernel initramfs image' first" >&2; exit 1; }
done

state=$(mktemp -d /tmp/sietch-sdk-XXXXXX)
pid=
cleanup() {
	rc=$?
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
	# sietchd leaves its vmm processes running on purpose: stop them.
	pkill -f -- "$state/" 2>/dev/null || true
	sleep 0.2
	pkill -9 -f -- "$state/" 2>/dev/null || true
	if [ "$rc" != 0 ] && [ -f "$state/sietchd.log" ]; then
		echo "sdk-testenv: sietchd log (last 40 lines):" >&2
		tail -n 40 "$state/sietchd.log" >&2
	fi
	rm -rf "$state"
	exit "$rc"
}
trap cleanup EXIT INT TERM

go run ./testguest/cmd/testguest -o "$state/guests" >/dev/null
bundle=build/openapi.json
tools/openapi-lint/node_modules/.bin/redocly bundle api/openapi.yaml --ext json -o "$bundle" >/dev/null 2>&1 ||
	{ echo "sdk-testenv: could not bundle api/openapi.yaml to JSON (run make deps)" >&2; exit 1; }

b=$root/build
bin/sietchd --state-dir "$state" \
	--image "default:kind=linux,kernel=$b/kernel/vmlinux,initrd=$b/initramfs/initramfs.cpio,rootfs=$b/rootfs.ext4,cmdline=console=ttyS0" \
	--image "counter:kind=testguest,kernel=$state/guests/counter.elf,mem=64,cmdline=n=100000000000" \
	>"$state/sietchd.log" 2>&1 &
pid=$!

export SIETCH_STATE_DIR=$state SIETCH_ADDR=unix://$state/sietchd.sock SIETCH_TOKEN_FILE=$state/token
export SIETCH_TEST_TESTGUEST=counter SIETCH_OPENAPI_JSON=$root/$bundle SIETCH_BIN=$root/bin/sietch
for _ in $(seq 100); do bin/sietch health >/dev/null 2>&1 && break; sleep 0.1; done
bin/sietch health >/dev/null || { echo "sdk-testenv: sietchd did not start" >&2; exit 1; }

if [ "${SIETCH_TEST_NO_TEMPLATE:-}" != 1 ]; then
	echo "sdk-testenv: building the template sdk (one Linux boot)" >&2
	bin/sietch template build sdk --image default >&2
	export SIETCH_TEST_TEMPLATE=sdk
fi
"$@"
