#!/usr/bin/env bash
# bench-boot.sh KERNEL INITRAMFS: wall time from start to the smoke /init's
# marker line, booting the same kernel, initramfs and command line through
# the sietch vmm and through QEMU's microvm machine (see docs/PERFORMANCE.md).
#
# Environment: RUNS (default 3) boots of each; MEM (default 128M);
# COMPAT (default auto) the vmm's --compat; VMM (default bin/vmm of this
# repository); QEMU (default qemu-system-x86_64); QEMU_CPU (default: the
# first model QEMU accepts here, see internal/qemupeer); TIMEOUT (default
# 180) seconds per boot.
set -euo pipefail
export LC_ALL=C

marker='sietch-smoke: init reached'
last_line='sietch-smoke: power'

usage() {
	echo "usage: $0 KERNEL INITRAMFS   (e.g. $0 build/kernel/vmlinux build/smoke/smoke.cpio)" >&2
	exit 2
}
die() {
	echo "bench-boot: error: $*" >&2
	exit 1
}

[ $# -eq 2 ] || usage
kernel=$1
initrd=$2
here=$(cd "$(dirname "$0")/.." && pwd)
runs=${RUNS:-3}
mem=${MEM:-128M}
compat=${COMPAT:-auto}
vmm=${VMM:-$here/bin/vmm}
qemu=${QEMU:-qemu-system-x86_64}
timeout=${TIMEOUT:-180}

[ -r "$kernel" ] || die "kernel $kernel not found; build it with 'make kernel'"
[ -r "$initrd" ] || die "initramfs $initrd not found; build it with 'make smoke-initramfs'"
[ -x "$vmm" ] || die "vmm binary $vmm not found; build it with 'make vmm' or set VMM"
command -v "$qemu" >/dev/null || die "$qemu not found; install qemu-system-x86 or set QEMU"
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "RUNS=$runs is not a positive number"
# The CPU model QEMU accepts differs between host kinds ("-cpu host" aborts
# on the AMD hosts, which refuse IA32_ARCH_CAPABILITIES); QEMU_CPU overrides.
if [ -z "${QEMU_CPU:-}" ]; then
	QEMU_CPU=$(cd "$here" && go run ./internal/qemupeer/cmd/qemu-cpu "$(command -v "$qemu")") ||
		die "QEMU cannot start a KVM vCPU on this host (see above); set QEMU_CPU to a model that works"
fi

tmp=$(mktemp -d)
pid=
cleanup() {
	if [ -n "$pid" ]; then kill -9 "$pid" 2>/dev/null || true; fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# boot NAME KILL CMD...: runs CMD with its stdout on a fifo and sets result
# to the seconds from start to the first line holding the marker ("-" if
# none came within TIMEOUT). With KILL=1 the command is killed once /init
# says it is powering off (QEMU has no sietch power-off port); otherwise it
# must exit by itself, and its output is read to the end so that it never
# writes to a closed pipe. Output is kept in $tmp/NAME.stdout and .stderr.
boot() {
	local name=$1 kill_at_end=$2
	shift 2
	local fifo=$tmp/out.fifo start found= line deadline now left fd
	rm -f "$fifo"
	mkfifo "$fifo"
	: >"$tmp/$name.stdout"
	start=$EPOCHREALTIME
	"$@" >"$fifo" 2>"$tmp/$name.stderr" </dev/null &
	pid=$!
	deadline=$(awk -v s="$start" -v t="$timeout" 'BEGIN { printf "%d", s + t }')
	exec {fd}<"$fifo"
	while :; do
		now=${EPOCHREALTIME%.*}
		left=$((deadline - now))
		[ "$left" -gt 0 ] || break
		IFS= read -r -t "$left" -u "$fd" line || break
		printf '%s\n' "${line%$'\r'}" >>"$tmp/$name.stdout"
		if [ -z "$found" ] && [[ $line == *"$marker"* ]]; then
			found=$EPOCHREALTIME
		fi
		# /init prints its uptime, then "powering off": enough to kill.
		if [ -n "$found" ] && [ "$kill_at_end" = 1 ] && [[ $line == *"$last_line"* ]]; then
			kill -9 "$pid" 2>/dev/null || true
			break
		fi
	done
	exec {fd}<&-
	kill -9 "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	pid=
	if [ -z "$found" ]; then
		echo "bench-boot: $name: no \"$marker\" within ${timeout}s; last output:" >&2
		tail -n 5 "$tmp/$name.stdout" "$tmp/$name.stderr" >&2 || true
		result=- uptime=?
		return
	fi
	result=$(awk -v a="$start" -v b="$found" 'BEGIN { printf "%.3f", b - a }')
	# The guest's own clock at the marker (jiffies-based on our hosts, so it
	# runs slow when timer ticks are late); "?" if /init could not print it.
	uptime=$(sed -n 's/.*sietch-smoke: uptime \([0-9.]*\).*/\1/p' "$tmp/$name.stdout" | head -n 1)
	uptime=${uptime:-?}
}

echo "bench-boot: $(date -u +%Y-%m-%dT%H:%M:%SZ) nproc=$(nproc) mem=$mem runs=$runs"
echo "bench-boot: kernel=$kernel initramfs=$initrd qemu-cpu=$QEMU_CPU"

vmm_cmd=("$vmm" run --kernel "$kernel" --initrd "$initrd" --mem "$mem" --compat "$compat" --log-level debug)
declare -a vmm_t qemu_t
for i in $(seq "$runs"); do
	boot vmm 0 "${vmm_cmd[@]}"
	vmm_t+=("$result")
	echo "vmm  run $i: $result s to marker (guest uptime $uptime s)"
	# The vmm logs the command line it gave the guest (compatibility profile
	# included) at debug level; the QEMU run after it gets exactly that one.
	cmdline=$(sed -n 's/.*msg=booting cmdline="\(\([^"\\]\|\\.\)*\)".*/\1/p' "$tmp/vmm.stderr" | head -n 1)
	[ -n "$cmdline" ] || die "vmm did not log its kernel command line; stderr: $(head -c 2000 "$tmp/vmm.stderr")"
	cmdline=${cmdline//\\\"/\"}
	echo "bench-boot: cmdline=$cmdline"
	boot qemu 1 "$qemu" -accel kvm -M microvm -cpu "$QEMU_CPU" -smp 1 -m "$mem" \
		-nodefaults -no-user-config -display none -serial stdio -no-reboot \
		-kernel "$kernel" -initrd "$initrd" -append "$cmdline"
	qemu_t+=("$result")
	echo "qemu run $i: $result s to marker (guest uptime $uptime s)"
done

# mean of the numeric arguments ("-" marks a failed run)
mean() { printf '%s\n' "$@" | awk '$1 != "-" { s += $1; n++ } END { if (n) printf "%.3f", s / n; else printf "-" }'; }
vm=$(mean "${vmm_t[@]}")
qm=$(mean "${qemu_t[@]}")
echo "vmm  mean: $vm s (runs: ${vmm_t[*]})"
echo "qemu mean: $qm s (runs: ${qemu_t[*]})"
if [ "$vm" != - ] && [ "$qm" != - ]; then
	awk -v a="$vm" -v b="$qm" 'BEGIN { printf "ratio vmm/qemu: %.2f\n", a / b }'
else
	echo "ratio vmm/qemu: - (a side never reached the marker)"
	exit 1
fi
