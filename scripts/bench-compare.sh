#!/usr/bin/env bash
# bench-compare.sh BASE [COUNT]: the benchmarks of the paths that matter
# (vmm start to the first serial byte, an exit round trip, virtio-blk
# through a jailed device process, restore) on BASE and on the working
# tree, interleaved so that both see the same host, then benchstat's
# comparison. BASE is any git revision; COUNT runs each (default 6).
# Results go to build/bench-compare/.
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:?usage: $0 BASE [COUNT]}
count=${2:-6}
out=build/bench-compare
mkdir -p "$out"
wt=$(mktemp -d /tmp/sietch-bench-base-XXXX)
git worktree add -q --detach "$wt" "$base"
trap 'git worktree remove --force "$wt"' EXIT

# package, -bench pattern, -benchtime
benches=(
	"./cmd/vmm ^BenchmarkStartToFirstSerialByte$ 20x"
	"./vmm ^BenchmarkExitRoundTrip$ 20x"
	"./cmd/vmm ^BenchmarkVirtioBlk$ 5x"
	"./vmm ^BenchmarkRestore$/^256MiB$ 5x"
)
: >"$out/old.txt"
: >"$out/new.txt"
for i in $(seq "$count"); do
	for b in "${benches[@]}"; do
		read -r pkg pattern times <<<"$b"
		echo "bench-compare: round $i/$count: $pattern" >&2
		(cd "$wt" && go test -p 1 -run '^$' -bench "$pattern" -benchtime "$times" -count 1 "$pkg") >>"$out/old.txt"
		go test -p 1 -run '^$' -bench "$pattern" -benchtime "$times" -count 1 "$pkg" >>"$out/new.txt"
	done
done
go run golang.org/x/perf/cmd/benchstat@latest "$out/old.txt" "$out/new.txt" | tee "$out/benchstat.txt"
