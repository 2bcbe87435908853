#!/usr/bin/env bash
# quickstart.sh (make quickstart): from a fresh Debian 12 machine to a
# running sandbox. Installs what is missing, builds the guest kernel, the
# initramfs, the default Debian root image and the binaries (each cached:
# a second run takes seconds), starts sietchd on build/state unless one
# already serves it, creates a sandbox, runs python3 in it, and says what
# to try next. Step output goes to build/quickstart.log.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
state=$root/build/state
log=$root/build/quickstart.log
mkdir -p "$state"
: >"$log"
export SIETCH_STATE_DIR=$state
unset SIETCH_ADDR SIETCH_TOKEN_FILE

total=7
n=0
tty=false
[ -t 2 ] && tty=true

die() {
	printf 'quickstart: %s\n' "$*" >&2
	exit 1
}

# step TITLE CMD...: run CMD with its output in the log; on a terminal,
# one status line with the elapsed time and the log's last line.
step() {
	local title=$1 start=$SECONDS pid rc=0
	shift
	n=$((n + 1))
	printf '\n== [%d/%d] %s: %s\n' "$n" "$total" "$title" "$*" >>"$log"
	if $tty; then
		"$@" >>"$log" 2>&1 &
		pid=$!
		while kill -0 "$pid" 2>/dev/null; do
			printf '\r\033[K[%d/%d] %s… %ds  %s' "$n" "$total" "$title" $((SECONDS - start)) \
				"$(tail -n 1 "$log" | tr -cd '[:print:]' | cut -c1-60)" >&2
			sleep 1
		done
		wait "$pid" || rc=$?
		printf '\r\033[K' >&2
	else
		"$@" >>"$log" 2>&1 || rc=$?
	fi
	if [ "$rc" -ne 0 ]; then
		printf '[%d/%d] %s failed (exit %d); the end of %s:\n' "$n" "$total" "$title" "$rc" "$log" >&2
		tail -n 25 "$log" >&2
		exit 1
	fi
	printf '[%d/%d] %s (%ds)\n' "$n" "$total" "$title" $((SECONDS - start)) >&2
}

[ "$(id -u)" -eq 0 ] || die "run as root (sudo make quickstart): packages are installed with apt, and each sandbox's device processes are jailed in namespaces only root may create"
[ -e /dev/kvm ] || die "/dev/kvm is missing: this machine has no KVM (enable virtualization, or load kvm_intel/kvm_amd)"

go=${GO:-go}
step "packages (Debian, Go modules, npm) that are missing" make --no-print-directory deps GO="$go"
step "vmm, sietchd and sietch binaries" make --no-print-directory all GO="$go"
bin/vmm check >>"$log" 2>&1 || die "this host's KVM cannot run sandboxes; bin/vmm check says why"
step "guest kernel (2-3 minutes the first time)" make --no-print-directory kernel
step "guest initramfs (guest-init and the agent)" make --no-print-directory initramfs GO="$go"
step "default root image: Debian bookworm with python3, git, curl (debootstrap: minutes the first time)" \
	make --no-print-directory image GO="$go"

start_sietchd() {
	if bin/sietch health >/dev/null 2>&1; then
		pid=$(cat "$state/sietchd.pid" 2>/dev/null || true)
		if [ -n "$pid" ] && [ -e "/proc/$pid/exe" ] && ! [ "/proc/$pid/exe" -ef bin/sietchd ]; then
			# An older build serves: restart it (its sandboxes keep running,
			# and the new sietchd takes them up again).
			echo "sietchd $pid runs an older build; restarting it"
			kill "$pid"
			for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		else
			echo "sietchd already serves $state"
			return
		fi
	fi
	setsid bin/sietchd --state-dir "$state" >>"$state/sietchd.log" 2>&1 </dev/null &
	echo $! >"$state/sietchd.pid"
	for _ in $(seq 100); do
		bin/sietch health >/dev/null 2>&1 && return
		kill -0 "$(cat "$state/sietchd.pid")" 2>/dev/null || { tail -n 20 "$state/sietchd.log"; return 1; }
		sleep 0.1
	done
	echo "sietchd did not answer within 10 s; see $state/sietchd.log"
	return 1
}
step "sietchd on $state" start_sietchd

# sietch create draws its own progress line while the guest boots.
n=$((n + 1))
printf '[%d/%d] creating a sandbox (the first time, sietchd builds the template default from the default image: one cold boot; then every create resumes it)…\n' "$n" "$total" >&2
id=$(bin/sietch create) || die "sietch create failed (above); sietchd's log is $state/sietchd.log"

# The sandbox's default python context is warm from the template: a run is
# a message to a live interpreter, not a process start.
code='import platform; print(f"hello from Python {platform.python_version()} in sandbox {platform.node()}, Linux {platform.release()}")'
echo
echo "\$ sietch run $id '$code'"
bin/sietch run "$id" "$code" || die "python in sandbox $id failed (above); its console: bin/sietch console $id"

tip() { printf '  %-52s %s\n' "$1" "$2"; }
printf '\nSandbox %s is running. Try next (SIETCH_STATE_DIR points sietch at this sietchd):\n\n' "$id"
printf '  export PATH=%s/bin:$PATH SIETCH_STATE_DIR=%s\n' "$root" "$state"
tip "sietch run $id 'x = 6 * 7'; sietch run $id 'x'" "python whose state persists between runs"
tip "sietch shell $id" "an interactive shell in it"
tip "sietch exec $id -- uname -a" "run a command (streams its output)"
tip "cat data.csv | sietch exec $id -- wc -l" "stream stdin to it"
tip "sietch exec -d $id -- python3 -m http.server 8000" "in the background: sietch ps, logs, kill"
tip "sietch cp ./notes.txt $id:/root/notes.txt" "copy a file in (and out: sietch cp $id:/etc/os-release .)"
tip "sietch snapshot $id" "checkpoint it; sietch restore SNAPSHOT starts a copy"
tip "sietch pause --to-disk $id" "free its memory; the next exec resumes it"
tip "sietch template ls" "templates: sietch template build NAME --start-cmd CMD makes one"
tip "sietch ls" "list sandboxes"
tip "sietch rm $id" "delete it"
cat <<MSG

sietchd keeps running in the background (log: $state/sietchd.log). Stop it with
  kill \$(cat $state/sietchd.pid)
(its sandboxes keep running and the next sietchd takes them up again; sietch rm them first to end them).
MSG
