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
start=$SECONDS
echo "==> venv: $VENV (about a minute cold, less when pip's cache has the wheels)"
python3 -m venv "$VENV"
echo "==> venv: [1/2] installing dev requirements (requirements-dev.txt, the longer step)"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
# The query library first: the exporter depends on it and it is not on any index.
echo "==> venv: [2/2] installing the query library and the exporter (editable, seconds)"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e ./queries -e ./exporter
echo "$want" > "$stamp"
echo "==> venv: done in $((SECONDS - start))s"
