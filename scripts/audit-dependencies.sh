#!/usr/bin/env bash
# Known-vulnerability audit of requirements/lock.txt with pip-audit (README "Reliability and security").
#   AUDIT=on (default): fails when a pinned package has a known vulnerability; when the vulnerability
#                       service cannot answer for some packages, says so loudly with their count.
#   AUDIT=strict:       also fails when any package could not be checked (use where the service is reachable).
#   AUDIT=off:          skips the audit, saying so on stderr.
#   AUDIT_SERVICE=pypi (default; PyPI's JSON API) or osv (api.osv.dev)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
mode=${AUDIT:-on}
if [ "$mode" = off ]; then
  echo "!!! dependency audit SKIPPED (AUDIT=off): requirements/lock.txt was NOT checked for known vulnerabilities" >&2
  exit 0
fi
report=$(mktemp)
trap 'rm -f "$report"' EXIT
"$PY" -m pip_audit --no-deps --disable-pip --progress-spinner off --format json --output "$report" \
  --vulnerability-service "${AUDIT_SERVICE:-pypi}" -r requirements/lock.txt 2>/dev/null
status=$?
"$PY" - "$report" "$mode" "$status" <<'PYEOF'
import json, sys
path, mode, status = sys.argv[1], sys.argv[2], int(sys.argv[3])
try:
    deps = json.load(open(path))["dependencies"]
except (OSError, ValueError, KeyError):
    print(f"!!! dependency audit FAILED: pip-audit exited {status} without a report", file=sys.stderr)
    sys.exit(1)
vulnerable = [d for d in deps if d.get("vulns")]
unchecked = [d for d in deps if "skip_reason" in d]
for d in vulnerable:
    ids = ", ".join(v["id"] for v in d["vulns"])
    print(f"VULNERABLE {d['name']}=={d['version']}: {ids}", file=sys.stderr)
checked = len(deps) - len(unchecked)
print(f"dependency audit: {checked} of {len(deps)} pinned packages checked, {len(vulnerable)} vulnerable")
if unchecked:
    print(f"!!! {len(unchecked)} packages could NOT be checked (vulnerability service unreachable?): "
          + ", ".join(d["name"] for d in unchecked[:8]) + (" ..." if len(unchecked) > 8 else ""),
          file=sys.stderr)
sys.exit(1 if vulnerable or (unchecked and mode == "strict") else 0)
PYEOF
