#!/usr/bin/env bash
# `make audit`: pip-audit of the venv (the exporter's runtime deps and the dev deps) against live advisory data.
# pip-audit reads PyPI's per-release JSON API (https://pypi.org/pypi/<name>/<version>/json and its
# `vulnerabilities`); a package-index mirror does not serve it, and pip-audit then fails on the first package with
# "Dependency not found on PyPI". So the service is probed first; when it does not answer, the audit stops with
# exit code 3 and says why. The GitHub workflows, which reach it, run the audit and gate releases on it.
# Exit codes: 0 no known vulnerability; 1 pip-audit found some (or failed); 3 advisory service unreachable.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${KCI_CACHE:=$HOME/.cache/kubecost-integration}"
VENV="${KCI_VENV:-$KCI_CACHE/venv}"
# The per-release endpoint pip-audit reads, for a release the venv surely has (requests is a runtime dependency).
requests_version=$("$VENV/bin/python" -c 'import requests; print(requests.__version__)')
probe="${KCI_AUDIT_PROBE_URL:-https://pypi.org/pypi/requests/$requests_version/json}"
probe_py='
import sys
import requests
url = sys.argv[1]
try:
    resp = requests.get(url, timeout=15)
    doc = resp.json() if resp.status_code == 200 else None
except (requests.RequestException, ValueError) as exc:
    sys.exit(f"{type(exc).__name__}: {exc}")
if not isinstance(doc, dict) or "vulnerabilities" not in doc:
    sys.exit(f"HTTP {resp.status_code}, no vulnerability data")
'
if ! why=$("$VENV/bin/python" -c "$probe_py" "$probe" 2>&1); then
  echo "==> audit: cannot run here: the advisory service pip-audit needs did not answer" >&2
  echo "    $probe: $why" >&2
  echo "    pip-audit needs PyPI's JSON API (pypi.org) with vulnerability data; a package-index mirror lacks it." >&2
  echo "    The GitHub workflows run this audit against live data (ci.yaml job audit; release.yaml gates on it)." >&2
  exit 3
fi
echo "==> audit: pip-audit of $VENV (advisory data: $probe answered)"
exec "$VENV/bin/pip-audit" --strict --skip-editable --progress-spinner off
