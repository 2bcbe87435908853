#!/usr/bin/env bash
# Lint api/openapi.yaml with Redocly CLI's recommended rules, the version
# pinned in package-lock.json beside this script (`make deps` installs it
# with npm ci). Warnings fail too. The findings kept on purpose, each with
# its reason, are in api/.redocly.lint-ignore.yaml.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cli=$here/node_modules/.bin/redocly
if [ ! -x "$cli" ]; then
	echo "openapi-lint: $cli is missing; run 'make deps' (or 'npm ci' in tools/openapi-lint)" >&2
	exit 1
fi
export REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true NO_UPDATE_NOTIFIER=1
cd "$here/../../api" # the ignore file is read from the working directory
json=$("$cli" lint --extends=recommended --format=json openapi.yaml 2>/dev/null) || true
verdict=$(node -e '
	const r = JSON.parse(require("fs").readFileSync(0, "utf8"));
	const t = r.totals;
	for (const p of r.problems) {
		const at = (p.location || []).map(l => l.pointer).join(", ");
		console.error(`api/openapi.yaml: ${p.severity} (${p.ruleId}) at ${at}: ${p.message}`);
	}
	console.log(`${t.errors} ${t.warnings} ${t.ignored}`);
' <<<"$json") || { echo "openapi-lint: Redocly gave no report; run $cli lint api/openapi.yaml by hand to see why" >&2; exit 1; }
read -r errors warnings ignored <<<"$verdict"
echo "openapi-lint: Redocly CLI $("$cli" --version 2>/dev/null | head -n 1) recommended rules: $errors errors, $warnings warnings ($ignored kept on purpose, see api/.redocly.lint-ignore.yaml)"
[ "$errors" = 0 ] && [ "$warnings" = 0 ]
