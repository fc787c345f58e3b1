#!/usr/bin/env bash
# Regenerate the Go wrapper modules under tools/go/ from tools/versions.env.
# Run after bumping THANOS_VERSION, KUBERNETES_VERSION or ETCD_VERSION; commit go.mod AND go.sum.
# (scripts/tools.sh only builds from the committed files; it never edits them.)
#
# Why wrappers: `go install pkg@version` refuses modules whose go.mod has replace directives
# (thanos, k8s.io/kubernetes, etcd's server module). A tiny module that requires the tool, copies
# its non-local replace lines and names the main packages in `tool` directives builds them.
#   thanos     – the upstream go.mod's non-local replace lines, copied verbatim
#   kubernetes – every staging module (k8s.io/X => ./staging/src/k8s.io/X in the upstream go.mod,
#                all required at the unresolvable v0.0.0) replaced by k8s.io/X v0.<minor>.<patch>
#   etcd       – no replaces (upstream's are relative paths to sibling modules that its requires pin)
#
#   ct         – no replaces; a wrapper only because the proxy refuses ct's version list (see update_ct)
#
# Usage: tools/go/update.sh [thanos|kubernetes|etcd|ct ...]   (default: all)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=../versions.env
source "$here/../versions.env"
export GOTOOLCHAIN=local GOFLAGS="${GOFLAGS:-} -mod=mod"

gomod_of() { # module@version -> path of the go.mod the proxy serves (downloads only the .mod)
  go mod download -json "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])'
}

go_line() { # upstream go.mod -> its `go` version (the wrapper must not ask for less)
  go mod edit -json "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Go"])'
}

new_wrapper() { # dir module-name go-version
  rm -f "$1/go.mod" "$1/go.sum"
  (cd "$1" && go mod init "$2" >/dev/null 2>&1 && go mod edit -go="$3")
}

update_thanos() {
  local d="$here/thanos" up
  up=$(gomod_of "github.com/thanos-io/thanos@$THANOS_VERSION")
  new_wrapper "$d" local/thanos-bin "$(go_line "$up")"
  (cd "$d"
    go mod edit -require="github.com/thanos-io/thanos@$THANOS_VERSION"
    # copy every non-local replace (New.Version set); local paths would not resolve outside the repo
    go mod edit -json "$up" | python3 -c '
import json, sys
for r in json.load(sys.stdin).get("Replace") or []:
    o, n = r["Old"], r["New"]
    if not n.get("Version"):
        continue
    old = o["Path"] + ("@" + o["Version"] if o.get("Version") else "")
    print("-replace=%s=%s@%s" % (old, n["Path"], n["Version"]))
' | xargs -r go mod edit
    go mod edit -tool=github.com/thanos-io/thanos/cmd/thanos
    go mod tidy)
  echo "thanos wrapper: $(grep -c '=>' "$d/go.mod") replace lines"
}

update_kubernetes() {
  local d="$here/kubernetes" up minor_ver
  up=$(gomod_of "k8s.io/kubernetes@$KUBERNETES_VERSION")
  minor_ver="v0.${KUBERNETES_VERSION#v1.}"   # v1.36.3 -> v0.36.3 (staging tag scheme since 1.17)
  new_wrapper "$d" local/kubernetes-bin "$(go_line "$up")"
  (cd "$d"
    # keep k8s's godebug defaults (e.g. `godebug default=go1.26`) so runtime behaviour matches
    go mod edit -json "$up" | python3 -c '
import json, sys
for g in json.load(sys.stdin).get("GoDebug") or []:
    print("-godebug=%s=%s" % (g["Key"], g["Value"]))
' | xargs -r go mod edit
    go mod edit -require="k8s.io/kubernetes@$KUBERNETES_VERSION"
    sed -n 's|^[[:space:]]*\(k8s\.io/[^ ]*\) => \./staging/.*|\1|p' "$up" | sort -u \
      | sed "s|.*|-replace=&=&@$minor_ver|" | xargs go mod edit
    # kubelet, kubeadm and kube-proxy: the offline kind node (scripts/images/40-kind.sh)
    for c in kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kubeadm kube-proxy; do
      go mod edit -tool="k8s.io/kubernetes/cmd/$c"
    done
    go mod tidy)
  echo "kubernetes wrapper: $(grep -c '=>' "$d/go.mod") staging replace lines ($minor_ver)"
}

update_etcd() {
  local d="$here/etcd" up
  up=$(gomod_of "go.etcd.io/etcd/server/v3@$ETCD_VERSION")
  new_wrapper "$d" local/etcd-bin "$(go_line "$up")"
  (cd "$d"
    go mod edit -require="go.etcd.io/etcd/server/v3@$ETCD_VERSION" -tool=go.etcd.io/etcd/server/v3
    go mod tidy)
  echo "etcd wrapper: go.etcd.io/etcd/server/v3 $ETCD_VERSION"
}

update_ct() {
  # No replaces upstream, but `go install ...ct@v3.14.0` fails: it asks the proxy for the module's
  # version list (deprecation check) and the proxy answers 403 for github.com/helm/chart-testing/v3.
  local d="$here/ct" up
  up=$(gomod_of "github.com/helm/chart-testing/v3@$CT_VERSION")
  new_wrapper "$d" local/ct-bin "$(go_line "$up")"
  (cd "$d"
    go mod edit -require="github.com/helm/chart-testing/v3@$CT_VERSION" -tool=github.com/helm/chart-testing/v3/ct
    go mod tidy)
  echo "ct wrapper: github.com/helm/chart-testing/v3 $CT_VERSION"
}

targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(thanos kubernetes etcd ct)
for t in "${targets[@]}"; do
  case "$t" in
    thanos|kubernetes|etcd|ct) "update_$t" ;;
    *) echo "unknown wrapper: $t (thanos|kubernetes|etcd|ct)" >&2; exit 2 ;;
  esac
done
