#!/usr/bin/env bash
# Runs every fuzz target in the module for FUZZTIME each, one after the
# other (go test -fuzz takes one target at a time), and goes on when one
# fails. At the end it prints a table of executions per target and exits 1
# if any target failed; a failing input is in that package's
# testdata/fuzz/TARGET/, where go test keeps it as a regression seed.
#
#   FUZZTIME      time per target (default 30s)
#   FUZZMINIMIZE  -fuzzminimizetime (default 100x): Go minimises every new
#                 interesting input for up to 60 s by default, during which
#                 no new inputs run; a bound in executions keeps the
#                 campaign fuzzing
#   FUZZ_MATCH    only targets whose pkg:Name matches this extended regexp
#   FUZZ_REPORT   also write the table, as Markdown, to this file
#
# The targets are found with go test -list, so a new one is never missed.
# Temporary files (the extraction targets make many) go to a tmpfs when
# /dev/shm is there.
set -uo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-30s}
FUZZMINIMIZE=${FUZZMINIMIZE:-100x}
FUZZ_MATCH=${FUZZ_MATCH:-.}
module=$($GO list -m)

if [ -d /dev/shm ] && [ -w /dev/shm ]; then
	TMPDIR=$(mktemp -d /dev/shm/sietch-fuzz.XXXXXX)
	export TMPDIR
	trap 'rm -rf "$TMPDIR"' EXIT
fi

echo "fuzz: listing targets (go test -list)" >&2
targets=()
while read -r t; do
	targets+=("$t")
done < <(
	$GO test -list '^Fuzz' ./... 2>/dev/null | awk -v mod="$module" '
		/^Fuzz/ { names[n++] = $1; next }
		/^ok / { pkg = $2; sub("^" mod, ".", pkg); for (i = 0; i < n; i++) print pkg ":" names[i]; n = 0; next }
		{ n = 0 }' | grep -E -- "$FUZZ_MATCH" | sort
)
if [ ${#targets[@]} -eq 0 ]; then
	echo "fuzz: no target matches $FUZZ_MATCH (or the tests do not build: go vet ./...)" >&2
	exit 1
fi
echo "fuzz: ${#targets[@]} targets, $FUZZTIME each" >&2

logs=$(mktemp -d)
rows=()
failed=()
for t in "${targets[@]}"; do
	pkg=${t%%:*} fn=${t##*:}
	log="$logs/${pkg//\//_}_$fn.log"
	echo "=== fuzz $pkg $fn" >&2
	fuzz() { $GO test -run '^$' -fuzz "^$fn\$" -fuzztime "$FUZZTIME" -fuzzminimizetime "$FUZZMINIMIZE" "$pkg" >"$log" 2>&1; }
	fuzz
	rc=$?
	# go test -fuzz sometimes fails a short run on its own deadline
	# ("context deadline exceeded", no failing input): that is the
	# fuzzer's, not a finding. Run the target once more; if that happens
	# again, say so and go on.
	deadline_only() { ! grep -q 'Failing input' "$log" && grep -q 'context deadline exceeded' "$log"; }
	if [ $rc -ne 0 ] && deadline_only; then
		echo "fuzz $t: go test hit its own deadline with no failing input; once more" >&2
		fuzz
		rc=$?
		if [ $rc -ne 0 ] && deadline_only; then
			echo "fuzz $t: again only go test's own deadline; not counted as a failure" >&2
			rc=0
		fi
	fi
	# The last progress line: "fuzz: elapsed: 30s, execs: 123 (4/sec), new interesting: 5 (total: 9)".
	last=$(grep -E '^fuzz: elapsed: .*execs: ' "$log" | tail -1)
	execs=$(sed -nE 's/.*execs: ([0-9]+).*/\1/p' <<<"$last")
	newi=$(sed -nE 's/.*new interesting: ([0-9]+).*/\1/p' <<<"$last")
	corpus=$(sed -nE 's/.*\(total: ([0-9]+)\).*/\1/p' <<<"$last")
	execs=${execs:-0} newi=${newi:-0} corpus=${corpus:-0}
	if [ $rc -eq 0 ]; then
		result=ok
	else
		result=FAIL
		failed+=("$t")
		# What go test said about the failure, and where it put the input.
		grep -E -- '--- FAIL|Failing input|panic:|_test.go:[0-9]+:|go test -run=' "$log" | head -8 >&2
	fi
	# The rate over the fuzzing itself (elapsed as Go prints it: 1m30s).
	elapsed=$(sed -nE 's/^fuzz: elapsed: ([0-9hms.]+),.*/\1/p' <<<"$last")
	rate=$(awk -v n="$execs" -v d="${elapsed:-0s}" 'BEGIN {
		s = 0; v = ""
		for (i = 1; i <= length(d); i++) {
			c = substr(d, i, 1)
			if (c == "h") { s += v * 3600; v = "" } else if (c == "m") { s += v * 60; v = "" } else if (c == "s") { s += v; v = "" } else v = v c
		}
		printf "%d", (s > 0 ? n / s : 0) }')
	rows+=("$pkg|$fn|$result|$execs|$rate|$newi|$corpus")
	printf 'fuzz %-40s %-4s %12s execs %8s/s\n' "$t" "$result" "$execs" "$rate" >&2
done

table() {
	echo "| package | target | result | executions | per second | new interesting | corpus |"
	echo "| --- | --- | --- | ---: | ---: | ---: | ---: |"
	for r in "${rows[@]}"; do
		IFS='|' read -r pkg fn result execs rate newi corpus <<<"$r"
		echo "| \`$pkg\` | $fn | $result | $execs | $rate | $newi | $corpus |"
	done
}
echo
echo "fuzz: $FUZZTIME per target, minimisation $FUZZMINIMIZE, $(date -u +%Y-%m-%dT%H:%MZ), $(uname -m)"
table
if [ -n "${FUZZ_REPORT:-}" ]; then
	{
		echo "Fuzzing, $FUZZTIME per target (-fuzzminimizetime $FUZZMINIMIZE), $(date -u +%Y-%m-%d), $(nproc) CPUs:"
		echo
		table
	} >"$FUZZ_REPORT"
	echo "fuzz: table written to $FUZZ_REPORT" >&2
fi
if [ ${#failed[@]} -gt 0 ]; then
	echo "fuzz: ${#failed[@]} of ${#targets[@]} targets failed: ${failed[*]}" >&2
	echo "fuzz: logs in $logs; failing inputs are in each package's testdata/fuzz/ (commit them as regression seeds once fixed)" >&2
	exit 1
fi
rm -rf "$logs"
