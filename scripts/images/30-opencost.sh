# shellcheck shell=bash
# OpenCost's cost-model (the cost engine of the kind layer: Kubecost's own images cannot be had here), sourced by
# scripts/images.sh. Builds localhost/kci/opencost:$OPENCOST_VERSION the way upstream's Dockerfile does: the
# binary from ./cmd/costmodel with the version stamped into pkg/version, entrypoint /go/bin/app, the
# provider pricing files configs/*.json in /models/ (the custom provider falls back to /models/default.json),
# user 1001. The base is our localhost/kci/debian:bookworm instead of alpine.
#
# Where the source comes from: github.com/opencost/opencost@$OPENCOST_VERSION from the Go module proxy only
# (`go mod download`, checked against the checksum database like any module); nothing else is fetched.
#
# Why v1.108.0 and not v1.111.0 (the proxy serves both): from v1.109 on, OpenCost's go.mod replaces its nested
# module github.com/opencost/opencost/core with `./core`; a module zip never contains a nested module, and the
# proxy serves no core version of those releases (`go list -m -versions github.com/opencost/opencost/core`:
# 403 "This module version is not available"), so v1.111.0 cannot be built from the proxy on a fresh machine.
# v1.108.0 is one module (go.mod `go 1.19`, cmd/costmodel, /allocation, the same pricing and ETL settings).
IMAGES+=("opencost|$OPENCOST_VERSION|6m|")

opencost_ref() { echo "localhost/kci/opencost:$OPENCOST_VERSION"; }

# The configured Go proxy without the `direct` fallback: a module the proxy refuses must fail here, not turn
# into a VCS fetch from the module's origin.
opencost_goproxy() {
  local p
  p=$(go env GOPROXY)
  p=${p%,direct}; p=${p%|direct}; p=${p%,off}; p=${p%|off}
  [[ -n $p && $p != direct && $p != off ]] || p=https://proxy.golang.org
  echo "$p"
}

build_opencost() {
  local work="$IMGBUILD/opencost" moddir ref base=localhost/kci/debian:bookworm ver=${OPENCOST_VERSION#v}
  ref=$(opencost_ref)
  image_exists "$base" || { echo "base image $base missing: run scripts/images.sh debian first" >&2; return 1; }
  export GOPROXY
  GOPROXY=$(opencost_goproxy)
  echo "GOPROXY=$GOPROXY"

  echo "--- source: github.com/opencost/opencost@$OPENCOST_VERSION (Go module proxy)"
  moddir=$(go mod download -json "github.com/opencost/opencost@$OPENCOST_VERSION" \
    | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
  [[ -d $moddir ]] || { echo "go mod download gave no directory" >&2; return 1; }
  rm -rf "$work"
  mkdir -p "$work/ctx/models"
  cp -r "$moddir" "$work/src"
  chmod -R u+w "$work/src"
  if grep -q '^[[:space:]]*github.com/opencost/opencost/core => ./core' "$work/src/go.mod"; then
    echo "github.com/opencost/opencost@$OPENCOST_VERSION replaces its core module with ./core, which no module" >&2
    echo "zip contains and the proxy does not serve: pin a single-module release (<= v1.108.0)" >&2
    return 1
  fi

  echo "--- go build ./cmd/costmodel (CGO_ENABLED=0, $GOFLAGS)"
  ( cd "$work/src" && CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/opencost/opencost/pkg/version.Version=$ver -X github.com/opencost/opencost/pkg/version.GitCommit=$OPENCOST_VERSION" \
      -o "$work/ctx/app" ./cmd/costmodel )
  # The files upstream's Dockerfile adds next to the binary
  cp "$work/src/configs/"{default,azure,aws,gcp,alibaba}.json "$work/ctx/models/"
  cp "$work/src/LICENSE" "$work/src/NOTICE" "$work/ctx/"
  # modes as upstream sets them with ADD --chmod (the legacy builder has no --chmod: set them in the context)
  chmod 0755 "$work/ctx/app"
  chmod 0644 "$work/ctx/models/"*.json "$work/ctx/NOTICE" "$work/ctx/LICENSE"
  cat >"$work/ctx/Dockerfile" <<EOF
FROM $base
LABEL org.opencontainers.image.title=opencost \\
      org.opencontainers.image.description="OpenCost cost-model $OPENCOST_VERSION, built offline from the Go module proxy" \\
      org.opencontainers.image.version=$ver \\
      org.opencontainers.image.source=https://github.com/opencost/opencost \\
      org.opencontainers.image.licenses=Apache-2.0
COPY app /go/bin/app
COPY models/ /models/
COPY NOTICE LICENSE /
WORKDIR /
USER 1001
ENTRYPOINT ["/go/bin/app"]
EOF
  echo "--- docker build $ref"
  docker build -q -t "$ref" "$work/ctx"
  ls -l "$work/ctx/app"
  # the build tree is large (module copy); the binary is in the image now
  rm -rf "$work/src"
}

# The image runs the real binary: outside a cluster cost-model v1.108.0 stops at its Kubernetes client (it needs
# one before serving), so the check reads its start-up log: the stamped version, the Prometheus address taken
# (a closed loopback port: nothing leaves the container) and the stop at the Kubernetes client, nowhere earlier.
# Serving is proven in the cluster (tests-e2e/kind/test_opencost.py).
check_opencost() {
  local ref logs
  ref=$(opencost_ref)
  image_exists "$ref"
  [[ $(docker image inspect -f '{{.Config.User}} {{join .Config.Entrypoint " "}}' "$ref") == "1001 /go/bin/app" ]]
  docker run --rm --entrypoint /bin/sh "$ref" -c 'test -s /models/default.json && test -x /go/bin/app'
  logs=$(timeout 60 docker run --rm --network none -e PROMETHEUS_SERVER_ENDPOINT=http://127.0.0.1:9 "$ref" 2>&1 || true)
  echo "$logs" | tail -n 5
  grep -q "Starting cost-model version ${OPENCOST_VERSION#v} ($OPENCOST_VERSION)" <<<"$logs" &&
    grep -q "Failed to build Kubernetes client" <<<"$logs"
}
