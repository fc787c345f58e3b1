#!/usr/bin/env bash
# Create/refresh the Python venv in the cache with the exporter (editable) and pinned dev deps.
# Idempotent: re-installs only when requirements or the exporter's pyproject change.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${KCI_CACHE:=$HOME/.cache/kubecost-integration}"
VENV="${KCI_VENV:-$KCI_CACHE/venv}"
stamp="$VENV/.kci-stamp"
want=$(cat requirements-dev.txt queries/pyproject.toml exporter/pyproject.toml 2>/dev/null | sha256sum | cut -d' ' -f1)-$(pwd)
if [[ -x "$VENV/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi
echo "==> venv: $VENV"
python3 -m venv "$VENV"
echo "==> venv: installing dev requirements"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
# The query library first: the exporter depends on it and it is not on any index.
echo "==> venv: installing the query library and the exporter (editable)"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e ./queries -e ./exporter
echo "$want" > "$stamp"
