#!/bin/sh
# build.sh OUTDIR: build the smoke /init and OUTDIR/smoke.cpio (run from anywhere).
set -eu
if [ $# -ne 1 ]; then
	echo "usage: $0 OUTDIR" >&2
	exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$1"
out=$(cd "$1" && pwd)
gcc -static -nostdlib -ffreestanding -fno-pie -no-pie -fno-stack-protector \
	-O2 -Wall -Wl,--build-id=none -o "$out/init" "$here/init.c"
(cd "$here/../.." && go run ./guest-init/cmd/mkinitramfs -o "$out/smoke.cpio" --file "$out/init:/init:0755")
echo "smoke: wrote $out/smoke.cpio"
