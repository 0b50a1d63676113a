#!/usr/bin/env bash
# Known-vulnerability audit of requirements/lock.txt with pip-audit (README "Reliability and security").
# It fails when a pinned package has a known vulnerability AND when the vulnerability service cannot
# answer for every package (--strict): an audit that could not look is not a pass.
#   AUDIT_SERVICE=pypi (default; PyPI's JSON API) or osv (api.osv.dev)
#   AUDIT=off skips the audit, saying so on stderr (for a machine without either service).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
if [ "${AUDIT:-on}" = off ]; then
  echo "!!! dependency audit SKIPPED (AUDIT=off): requirements/lock.txt was NOT checked for known vulnerabilities" >&2
  exit 0
fi
"$PY" -m pip_audit --strict --no-deps --disable-pip --progress-spinner off \
  --vulnerability-service "${AUDIT_SERVICE:-pypi}" -r requirements/lock.txt
status=$?
if [ "$status" -ne 0 ]; then
  echo "!!! dependency audit FAILED (exit $status): a pinned package has a known vulnerability, or the" \
       "vulnerability service (${AUDIT_SERVICE:-pypi}) could not answer for every package - see above" >&2
fi
exit "$status"
