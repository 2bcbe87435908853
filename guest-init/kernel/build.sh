#!/bin/sh
# build.sh OUTDIR: build the sietch guest kernel (uncompressed ELF vmlinux).
#
# Extracts Debian's linux-source tarball into OUTDIR/src, applies patches/*.patch,
# configures tinyconfig + ./config + olddefconfig, checks that every option the
# fragment names came out as asked, builds vmlinux and copies it to
# OUTDIR/vmlinux. A stamp (sha256 of the tarball's name and size, the patches
# and the config) lets a rebuild reuse the tree; a change to any of them starts
# from a clean tree.
#
# Environment: KERNEL_TARBALL (default /usr/src/linux-source-6.1.tar.xz),
# JOBS (default nproc).
set -eu

if [ $# -ne 1 ]; then
	echo "usage: $0 OUTDIR" >&2
	exit 2
fi

here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$1"
out=$(cd "$1" && pwd)
src=$out/src
log=$out/build.log
tarball=${KERNEL_TARBALL:-/usr/src/linux-source-6.1.tar.xz}
jobs=${JOBS:-$(nproc)}
fragment=$here/config

# Reproducible build metadata (Documentation/kbuild/reproducible-builds.rst).
export KBUILD_BUILD_TIMESTAMP='Thu Jan  1 00:00:00 UTC 1970'
export KBUILD_BUILD_USER=sietch
export KBUILD_BUILD_HOST=sietch
export KBUILD_BUILD_VERSION=1
export LC_ALL=C

say() { echo "kernel: $*"; }
die() { echo "kernel: error: $*" >&2; exit 1; }

[ -r "$tarball" ] || die "kernel source $tarball not found; install it with 'apt-get install linux-source-6.1' or set KERNEL_TARBALL"
for tool in make gcc bc bison flex sha256sum patch; do
	command -v "$tool" >/dev/null 2>&1 || die "$tool not found; install build-essential bc bison flex libelf-dev libssl-dev"
done

: >"$log"

stamp=$( { echo "$(basename "$tarball") $(stat -c %s "$tarball")"
	cat "$fragment" "$here"/patches/*.patch; } | sha256sum | cut -d' ' -f1)

if [ -f "$src/.sietch-stamp" ] && [ "$(cat "$src/.sietch-stamp")" = "$stamp" ] && [ -f "$src/.config" ]; then
	say "reusing $src (sources, patches and config unchanged)"
else
	say "extracting $(basename "$tarball") into $src"
	rm -rf "$src" "$src.tmp"
	mkdir -p "$src.tmp"
	tar -xf "$tarball" -C "$src.tmp" --strip-components=1
	for p in "$here"/patches/*.patch; do
		say "applying $(basename "$p")"
		patch -d "$src.tmp" -p1 --quiet --forward <"$p" || die "patch $(basename "$p") does not apply to $(basename "$tarball")"
	done
	say "configuring: tinyconfig + $(basename "$fragment") + olddefconfig"
	make -C "$src.tmp" -s ARCH=x86_64 tinyconfig >>"$log" 2>&1 || die "make tinyconfig failed; see $log"
	(cd "$src.tmp" && scripts/kconfig/merge_config.sh -m .config "$fragment") >>"$log" 2>&1 ||
		die "merging $fragment failed; see $log"
	make -C "$src.tmp" -s ARCH=x86_64 olddefconfig >>"$log" 2>&1 || die "make olddefconfig failed; see $log"
	echo "$stamp" >"$src.tmp/.sietch-stamp"
	mv "$src.tmp" "$src"
fi

# Every option in the fragment must have survived olddefconfig exactly:
# "CONFIG_X=v" lines literally, "# CONFIG_X is not set" as unset or absent.
say "verifying .config against $(basename "$fragment")"
bad=$(awk '
	NR == FNR {
		if ($0 ~ /^CONFIG_[A-Za-z0-9_]+=/) { i = index($0, "="); want[substr($0, 1, i - 1)] = substr($0, i + 1) }
		else if ($0 ~ /^# CONFIG_[A-Za-z0-9_]+ is not set$/) want[$2] = "n"
		next
	}
	$0 ~ /^CONFIG_[A-Za-z0-9_]+=/ { i = index($0, "="); have[substr($0, 1, i - 1)] = substr($0, i + 1) }
	END {
		for (k in want) {
			h = (k in have) ? have[k] : "n"
			if (h != want[k]) printf "  %s: asked %s, got %s\n", k, want[k], h
		}
	}' "$fragment" "$src/.config" | sort)
if [ -n "$bad" ]; then
	echo "kernel: error: these options did not come out as $fragment asks (check their dependencies with 'make menuconfig' in $src):" >&2
	echo "$bad" >&2
	exit 1
fi

# -mstringop-strategy=rep_8byte: memset/memcpy as 8-byte `rep stos/movs`; the
# CPL0 emulator on our test hosts pays per iteration, not per byte.
say "building vmlinux with $jobs jobs (clean: 2-3 min on an idle 2-core host, 10 when it is busy; log: $log)"
start=$(date +%s)
rm -f "$out/make.rc"
{ make -C "$src" -j"$jobs" ARCH=x86_64 KCFLAGS=-mstringop-strategy=rep_8byte vmlinux 2>&1; echo $? >"$out/make.rc"; } |
	tee -a "$log" |
	awk '/^  (CC|AS|LD|AR) / { n++; if (n % 100 == 0) { printf "kernel:   %d objects built\n", n; fflush() } }'
rc=$(cat "$out/make.rc" 2>/dev/null || echo 1)
rm -f "$out/make.rc"
if [ "$rc" -ne 0 ] || [ ! -f "$src/vmlinux" ]; then
	tail -n 40 "$log" >&2
	die "kernel build failed (make exit $rc); full log in $log"
fi
# Replace atomically: a VM may be reading the previous vmlinux right now.
cp "$src/vmlinux" "$out/vmlinux.tmp"
mv "$out/vmlinux.tmp" "$out/vmlinux"
say "built $out/vmlinux: $(stat -c %s "$out/vmlinux") bytes in $(($(date +%s) - start))s"
