#!/usr/bin/env bash
# Every static check, offline, in order; stops at the first failing step and prints its output.
# Called by `make lint` (which runs `make tools` first). A step whose input does not exist yet prints
# "skipped: <reason>"; once the input exists the step runs.
#
# Usage: scripts/lint.sh [group ...]   groups: python chart docs workflows dockerfile (default: all)
#
#   ruff check, ruff format --check                 the whole repository (config: ruff.toml)
#   mypy --strict                                     exporter/ and queries/ (their pyproject.toml), the rest (mypy.ini)
#   helm lint --strict (helm 3 and helm 4)           charts/kubecost-integration, copied with the test-only stub
#                                                    cost-analyzer dependency (testsupport/render.py chart_copy)
#   values.schema.json vs values.yaml                 scripts/check_values_schema.py (GenSON infers values.yaml's
#                                                    structure; every key declared, types agree, defaults valid)
#   ct lint                                           same copy; ct.yaml + lintconf.yaml from the repo,
#                                                    chart_schema.yaml from $KCI_CACHE/etc/ct (see tools/README.md)
#   helm-docs check                                   regenerates the chart README in a temp copy, diffs it
#   actionlint                                        .github/workflows/*.y*ml
#   renovate-config-validator --strict                renovate.json
#   hadolint                                          exporter/Dockerfile
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
: "${KCI_CACHE:=$HOME/.cache/kubecost-integration}"
VENV="${KCI_VENV:-$KCI_CACHE/venv}"
export PATH="$KCI_CACHE/bin:$VENV/bin:$PATH"
CHART=charts/kubecost-integration

TMP=$(mktemp -d "${TMPDIR:-/tmp}/kci-lint.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

GROUPS_ALL=(python chart docs workflows dockerfile)
GROUPS_WANTED=("$@")
[[ ${#GROUPS_WANTED[@]} -gt 0 ]] || GROUPS_WANTED=("${GROUPS_ALL[@]}")
for g in "${GROUPS_WANTED[@]}"; do
  [[ " ${GROUPS_ALL[*]} " == *" $g "* ]] || { echo "unknown lint group '$g' (${GROUPS_ALL[*]})" >&2; exit 2; }
done
want() { [[ " ${GROUPS_WANTED[*]} " == *" $1 "* ]]; }

step_no=0
need() { # tool... : fail clearly when a tool is missing
  local t
  for t in "$@"; do
    command -v "$t" >/dev/null 2>&1 || {
      echo "==> lint: ERROR: '$t' not found in $KCI_CACHE/bin or the venv; run \`make tools\`" >&2
      exit 1
    }
  done
}
header() { step_no=$((step_no + 1)); echo "==> lint [$step_no] $1"; }
skip() { header "$1"; echo "    skipped: $2"; }
# run "title" cmd... : quiet on success, full output and exit on failure
run() {
  local title=$1 out rc=0
  shift
  header "$title"
  out=$("$@" 2>&1) || rc=$?
  if [[ $rc -ne 0 ]]; then
    printf '%s\n' "$out"
    echo "==> lint: FAILED: $title (exit $rc)" >&2
    exit "$rc"
  fi
  echo "    ok"
}

# ------------------------------------------------------------------ Python (the whole repository)
# ruff: one configuration, ruff.toml at the root (exporter/pyproject.toml extends it). mypy --strict in three
# runs: the exporter (exporter/pyproject.toml), everything else (mypy.ini), and the root conftest.py on its own
# (as module `conftest` it would clash with tests-e2e/conftest.py).
if ! want python; then :
else
  need ruff mypy
  run "ruff check (whole repository)" ruff check .
  run "ruff format --check (whole repository)" ruff format --check .
  run "mypy --strict exporter/" mypy --config-file exporter/pyproject.toml
  run "mypy --strict queries/" mypy --config-file queries/pyproject.toml
  run "mypy --strict testsupport/ bench/ tests-e2e/ scripts/ chart tests (mypy.ini)" mypy --config-file mypy.ini
  run "mypy --strict conftest.py" mypy --strict --python-version 3.11 conftest.py
fi

# ------------------------------------------------------------------ chart
# The chart is linted as a copy with the stub engine dependencies in charts/, so no step needs
# `helm dependency build` (network). chart_copy comes from testsupport/render.py (chart engineer).
chart_copy() {
  if [[ -f testsupport/render.py ]]; then
    "$VENV/bin/python" -c 'import sys; from testsupport.render import chart_copy; print(chart_copy(sys.argv[1]))' \
      "$TMP/chart"
  else # fallback: same recipe by hand
    mkdir -p "$TMP/chart/kubecost-integration/charts"
    tar -C "$CHART" --exclude=./charts --exclude=./tests -cf - . | tar -C "$TMP/chart/kubecost-integration" -xf -
    cp -r "$CHART/tests/stub/"* "$TMP/chart/kubecost-integration/charts/"
    echo "$TMP/chart/kubecost-integration"
  fi
}

# Like ct: lint once per ci/*-values.yaml scenario (the chart has required values, so its defaults
# alone are not installable), or with the defaults when there is no scenario file.
ci_values() { compgen -G "$COPY/ci/*-values.yaml" | sort || true; }
ci_values_desc() {
  local n; n=$(ci_values | grep -c . || true)
  if [[ $n -gt 0 ]]; then echo "$n ci/*-values.yaml"; else echo "default values"; fi
}
helm_lint() {
  local helm=$1 f files
  mapfile -t files < <(ci_values)
  if [[ ${#files[@]} -eq 0 ]]; then
    "$helm" lint --strict "$COPY"
    return
  fi
  for f in "${files[@]}"; do
    "$helm" lint --strict "$COPY" --values "$f" || { echo "(failed with ${f#"$COPY"/})"; return 1; }
  done
}

if ! want chart; then :
elif [[ -f $CHART/Chart.yaml ]]; then
  need helm helm4 ct yamllint yamale
  for stub in kubecost cost-analyzer opencost; do
    if [[ ! -d $CHART/tests/stub/$stub ]]; then
      echo "==> lint: ERROR: $CHART/tests/stub/$stub (test-only stub dependency) is missing" >&2
      exit 1
    fi
  done
  COPY=$(cd "$ROOT" && PYTHONPATH="$ROOT" chart_copy)
  run "values.schema.json agrees with values.yaml" "$VENV/bin/python" scripts/check_values_schema.py "$CHART"
  run "helm lint --strict ($(helm version --template '{{.Version}}'), $(ci_values_desc))" helm_lint helm
  run "helm lint --strict ($(helm4 version --template '{{.Version}}'), $(ci_values_desc))" helm_lint helm4
  # ct: offline settings live in ct.yaml (no maintainer lookups, no dependency build, no version
  # increment check against git); chart_schema.yaml is not in the repo, it comes with ct's module.
  [[ -f $KCI_CACHE/etc/ct/chart_schema.yaml ]] || { echo "==> lint: ERROR: $KCI_CACHE/etc/ct/chart_schema.yaml missing; run \`make tools\`" >&2; exit 1; }
  run "ct lint" ct lint --config ct.yaml --lint-conf lintconf.yaml \
    --chart-yaml-schema "$KCI_CACHE/etc/ct/chart_schema.yaml" --charts "$COPY"
else
  skip "helm lint / ct lint" "no $CHART/Chart.yaml yet"
fi

# ------------------------------------------------------------------ helm-docs
helm_docs_check() {
  local copy="$TMP/docs/kubecost-integration"
  mkdir -p "$copy"
  # the chart's own files only (not a built charts/ dir, whose subcharts would get READMEs too)
  # (runs inside `run`'s `||` context, where set -e is off: check every command)
  tar -C "$CHART" --exclude=./charts -cf - . | tar -C "$copy" -xf - || return 1
  helm-docs --chart-search-root "$copy" --log-level warning || return 1
  if ! diff -u "$CHART/README.md" "$copy/README.md"; then
    echo
    echo "The chart README is stale: run helm-docs (helm-docs --chart-search-root $CHART) and commit README.md"
    return 1
  fi
}
if ! want docs; then :
elif [[ -f $CHART/README.md.gotmpl ]]; then
  need helm-docs
  if [[ ! -f $CHART/README.md ]]; then
    header "helm-docs check"
    echo "$CHART/README.md is missing: run helm-docs (helm-docs --chart-search-root $CHART)" >&2
    exit 1
  fi
  run "helm-docs check ($CHART/README.md)" helm_docs_check
else
  skip "helm-docs check" "no $CHART/README.md.gotmpl yet"
fi

# ------------------------------------------------------------------ workflows and Dockerfile
shopt -s nullglob
workflows=(.github/workflows/*.yml .github/workflows/*.yaml)
shopt -u nullglob
if ! want workflows; then :
elif [[ ${#workflows[@]} -gt 0 ]]; then
  need actionlint
  run "actionlint (${#workflows[@]} workflows)" actionlint "${workflows[@]}"
else
  skip "actionlint" "no .github/workflows/*.yml yet"
fi
if want workflows && [[ -f renovate.json ]]; then
  need renovate-config-validator
  run "renovate-config-validator --strict (renovate.json)" renovate-config-validator --strict
fi

if ! want dockerfile; then :
elif [[ -f exporter/Dockerfile ]]; then
  need hadolint
  run "hadolint exporter/Dockerfile" hadolint --no-color exporter/Dockerfile
else
  skip "hadolint" "no exporter/Dockerfile yet"
fi

echo "==> lint: all $step_no steps done"
