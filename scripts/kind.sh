#!/usr/bin/env bash
# The kind cluster of the real-cluster layer: one script for the development machines (offline) and
# GitHub Actions (online). How the offline cluster is made, and why: tests-e2e/kind/README.md.
#
#   scripts/kind.sh up              create the cluster and wait until it works (idempotent); load the
#                                   images the tests run; Thanos Receive + Query in namespace thanos
#   scripts/kind.sh down            delete the cluster and everything `up` made (never stops Docker)
#   scripts/kind.sh load IMAGE...   copy images from our Docker Engine into the node (kind load docker-image)
#   scripts/kind.sh env             print `export` lines of the env file (eval "$(scripts/kind.sh env)")
#   scripts/kind.sh status          describe the cluster; exit 0 when it is up and healthy
#   scripts/kind.sh verify          prove it works: DNS + API Service from a pod, a PVC bound,
#                                   a NetworkPolicy enforced (allowed connection served, denied blocked)
#
# Environment:
#   KIND_CLUSTER   cluster name (default kci)
#   KIND_EXPERIMENTAL_DOCKER_NETWORK  the docker network of the nodes (kind's variable; default kind)
#   KCI_KIND_MODE  offline | online. Default: online when GITHUB_ACTIONS=true, else offline.
#                  offline: our node image (scripts/images.sh builds it, and every image the cluster
#                    runs), bridge CNI, kube-network-policies for NetworkPolicy, kind's local-path
#                    storage; kind runs through a docker shim (tests-e2e/kind/cluster/docker-shim.sh).
#                  online: stock kind, its default node image (pulled) and CNI (kindnetd, which
#                    enforces NetworkPolicy) and storage.
#
# Offline mode uses our own Docker Engine (scripts/docker.sh), where scripts/images.sh built the images;
# online mode the machine's Docker. State lives in $KCI_CACHE/kind/<cluster>/: kubeconfig, and env with
#   KUBECONFIG=...  KIND_CLUSTER=...  THANOS_QUERY_URL=http://127.0.0.1:<port>
# where <port> is a free host port chosen at `up`, mapped to node port 31902 (Thanos Query's NodePort).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
: "${KCI_CACHE:=$HOME/.cache/kubecost-integration}"
export KCI_CACHE
# shellcheck source=../tools/versions.env
source tools/versions.env

CLUSTER="${KIND_CLUSTER:-kci}"
STATE="$KCI_CACHE/kind/$CLUSTER"
KUBECONFIG_FILE="$STATE/kubeconfig"
ENV_FILE="$STATE/env"
NODE="$CLUSTER-control-plane"
# the docker network kind puts its nodes on (kind reads the same variable)
NETWORK="${KIND_EXPERIMENTAL_DOCKER_NETWORK:-kind}"
FILES="$ROOT/tests-e2e/kind/cluster"
THANOS_NODE_PORT=31902
# kind's defaults, written out: the bridge CNI configuration needs the node's pod range
POD_SUBNET=10.244.0.0/16
SERVICE_SUBNET=10.96.0.0/16
# kube-controller-manager gives the first (only) node the first /24 of the pod subnet
NODE_POD_CIDR=10.244.0.0/24
NODE_IMAGE="localhost/kci/kind-node:$KUBERNETES_VERSION"
NETPOL_IMAGE="localhost/kci/kube-network-policies:$KUBE_NETWORK_POLICIES_VERSION"
BUSYBOX_IMAGE=localhost/kci/busybox:bookworm
API_IMAGE=localhost/kci/python:3.11-bookworm

export PATH="$KCI_CACHE/bin:$PATH"
export DOCKER_BUILDKIT=0

START=$SECONDS
log() { echo "==> kind: $* ($((SECONDS - START))s)"; }
die() { echo "==> kind: ERROR: $*" >&2; exit 1; }

[[ "$CLUSTER" =~ ^[a-z0-9]([a-z0-9-]{0,40}[a-z0-9])?$ ]] \
  || die "KIND_CLUSTER='$CLUSTER' is not a valid cluster name (lower-case letters, digits and '-', at most 42 characters)"

if [[ -n "${KCI_KIND_MODE:-}" ]]; then
  MODE=$KCI_KIND_MODE
elif [[ "${GITHUB_ACTIONS:-}" == true ]]; then
  MODE=online
else
  MODE=offline
fi
[[ $MODE == offline || $MODE == online ]] || die "KCI_KIND_MODE='$MODE' must be offline or online"
# offline: our own Docker Engine (its images are the ones scripts/images.sh built); online: the
# machine's Docker (a GitHub runner's), where the public images are pulled
if [[ $MODE == offline ]]; then export DOCKER_HOST="unix://$KCI_CACHE/docker/docker.sock"; fi

# ---------------------------------------------------------------- kind and kubectl

# kind, through the docker shim in offline mode (only kind sees the shim)
kind_() {
  if [[ $MODE == offline ]]; then
    local shim="$STATE/shim"
    mkdir -p "$shim" "$STATE/empty-lib-modules"
    ln -sfn "$FILES/docker-shim.sh" "$shim/docker"
    KCI_REAL_DOCKER="$(command -v docker)" KCI_EMPTY_LIB_MODULES="$STATE/empty-lib-modules" \
      PATH="$shim:$PATH" kind "$@"
  else
    kind "$@"
  fi
}
kc() { kubectl --kubeconfig "$KUBECONFIG_FILE" "$@"; }

# (`kind get clusters` only lists containers: no shim needed)
cluster_exists() { command -v kind >/dev/null && kind get clusters 2>/dev/null | grep -xF "$CLUSTER" >/dev/null; }
node_running() { [[ "$(docker inspect -f '{{.State.Running}}' "$NODE" 2>/dev/null)" == true ]]; }

# healthy: node container running, API answering, node Ready, CoreDNS available
healthy() {
  node_running || return 1
  [[ -s "$KUBECONFIG_FILE" ]] || kind_ get kubeconfig --name "$CLUSTER" >"$KUBECONFIG_FILE" 2>/dev/null || return 1
  kc get --raw /readyz >/dev/null 2>&1 || return 1
  kc wait node --all --for=condition=Ready --timeout=5s >/dev/null 2>&1 || return 1
  kc -n kube-system wait deployment/coredns --for=condition=Available --timeout=5s >/dev/null 2>&1
}

host_port() { # the host port node port 31902 is published on
  docker port "$NODE" "$THANOS_NODE_PORT/tcp" 2>/dev/null | sed -n '1s/.*://p'
}

write_env() {
  local port
  port=$(host_port)
  [[ -n "$port" ]] || die "node port $THANOS_NODE_PORT is not published by $NODE (was the cluster made by scripts/kind.sh?)"
  kind_ get kubeconfig --name "$CLUSTER" >"$KUBECONFIG_FILE.tmp" && mv "$KUBECONFIG_FILE.tmp" "$KUBECONFIG_FILE"
  chmod 600 "$KUBECONFIG_FILE"
  cat >"$ENV_FILE" <<EOF
KUBECONFIG=$KUBECONFIG_FILE
KIND_CLUSTER=$CLUSTER
THANOS_QUERY_URL=http://127.0.0.1:$port
EOF
}

free_port() { # a free TCP port on 127.0.0.1, chosen now
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# ---------------------------------------------------------------- the kind network (offline)

# Offline, nothing in the cluster may talk to an address outside this machine: Docker forwards and
# masquerades traffic from its networks to the host's default route, so a pod connecting anywhere
# (even a Service VIP before kube-proxy has programmed it) would leave the machine. A REJECT rule in
# DOCKER-USER (the chain Docker reserves for its users, evaluated first in FORWARD) for everything
# forwarded out of the kind network's bridge to another interface stops that; traffic to the host
# itself, between the network's containers, and published ports on 127.0.0.1 are not forwarded
# out and keep working.
EGRESS_COMMENT="kci-kind: no egress from the kind network"
kind_bridge() { # the Linux bridge of the docker network $NETWORK
  local id name
  id=$(docker network inspect -f '{{.Id}}' "$NETWORK") || return 1
  name=$(docker network inspect -f '{{index .Options "com.docker.network.bridge.name"}}' "$NETWORK" 2>/dev/null || true)
  if [[ -n "$name" && "$name" != "<no value>" ]]; then echo "$name"; else echo "br-${id:0:12}"; fi
}
block_egress() {
  local br
  br=$(kind_bridge) || die "no docker network '$NETWORK'"
  ip link show "$br" >/dev/null 2>&1 || die "the kind network's bridge $br is not on this host"
  if ! iptables -C DOCKER-USER -i "$br" ! -o "$br" -m comment --comment "$EGRESS_COMMENT" -j REJECT 2>/dev/null; then
    iptables -I DOCKER-USER -i "$br" ! -o "$br" -m comment --comment "$EGRESS_COMMENT" -j REJECT \
      || die "could not add the egress block for $br to iptables DOCKER-USER"
  fi
  # A network kind created itself has an IPv6 subnet too; Docker manages no ip6tables rules here,
  # so the same block goes into ip6tables' FORWARD chain.
  if [[ "$(docker network inspect -f '{{.EnableIPv6}}' "$NETWORK")" == true ]] \
    && ! ip6tables -C FORWARD -i "$br" ! -o "$br" -m comment --comment "$EGRESS_COMMENT" -j REJECT 2>/dev/null; then
    ip6tables -I FORWARD -i "$br" ! -o "$br" -m comment --comment "$EGRESS_COMMENT" -j REJECT \
      || die "could not add the IPv6 egress block for $br to ip6tables FORWARD"
  fi
}
unblock_egress() { # every rule of ours whose bridge is gone (or all of them for a given bridge)
  local line br t chain
  for t in iptables:DOCKER-USER ip6tables:FORWARD; do
    chain=${t#*:}; t=${t%%:*}
    while read -r line; do
      br=$(sed -n 's/.*-i \([^ ]*\) .*/\1/p' <<<"$line")
      [[ -n "$br" ]] || continue
      if [[ "${1:-}" == "$br" ]] || ! ip link show "$br" >/dev/null 2>&1; then
        "$t" -D "$chain" -i "$br" ! -o "$br" -m comment --comment "$EGRESS_COMMENT" -j REJECT 2>/dev/null || true
      fi
    done < <("$t" -S "$chain" 2>/dev/null | grep -F -- "$EGRESS_COMMENT" || true)
  done
}
# The network kind would create, made here first so the block is in place before any container
# starts. IPv4 only (kind adds an IPv6 subnet when it creates it; the offline cluster is single-stack
# and no IPv6 path out of the machine should exist).
ensure_network() {
  if ! docker network inspect "$NETWORK" >/dev/null 2>&1; then
    local mtu
    mtu=$(docker network inspect bridge -f '{{index .Options "com.docker.network.driver.mtu"}}' 2>/dev/null || true)
    [[ "$mtu" =~ ^[0-9]+$ ]] || mtu=""
    docker network create -d=bridge -o com.docker.network.bridge.enable_ip_masquerade=true \
      ${mtu:+-o "com.docker.network.driver.mtu=$mtu"} "$NETWORK" >/dev/null
    : >"$STATE/created-network"
    log "created the docker network '$NETWORK' ($(docker network inspect -f '{{range .IPAM.Config}}{{.Subnet}} {{end}}' "$NETWORK" | xargs))"
  fi
  block_egress
  log "egress from the docker network '$NETWORK' ($(kind_bridge)) to other interfaces is rejected (iptables DOCKER-USER)"
}

# ---------------------------------------------------------------- up

ensure_prereqs() {
  if [[ $MODE == offline ]]; then
    scripts/docker.sh up >/dev/null
    log "docker: our Engine is up ($DOCKER_HOST)"
    # the images are built from these tools' binaries (control plane, etcd) and carry kubectl
    scripts/tools.sh kubectl etcd kube_control_plane | sed 's/^/    /' || die "building the tools failed (above)"
    # every image: the node's, and those the cluster runs (Thanos, the chart's, OpenCost), loaded at `up`
    scripts/images.sh | sed 's/^/    /' || die "building the images failed (above)"
  else
    scripts/tools.sh kubectl | sed 's/^/    /' || die "building kubectl failed (above)"
    docker version >/dev/null 2>&1 || die "online mode uses this machine's Docker, which does not answer"
    # a kind of the pinned version already on PATH will do; else `go install` it from the module proxy
    if ! kind version 2>/dev/null | grep -F "kind $KIND_VERSION " >/dev/null; then
      GOBIN="$KCI_CACHE/bin" GOTOOLCHAIN=local CGO_ENABLED=0 go install "sigs.k8s.io/kind@$KIND_VERSION" \
        || die "go install sigs.k8s.io/kind@$KIND_VERSION failed"
    fi
  fi
  log "tools and images ready ($MODE mode)"
}

write_kind_config() { # file port
  local cfg=$1 port=$2
  {
    echo "kind: Cluster"
    echo "apiVersion: kind.x-k8s.io/v1alpha4"
    echo "networking:"
    echo "  apiServerAddress: 127.0.0.1"
    echo "  podSubnet: $POD_SUBNET"
    echo "  serviceSubnet: $SERVICE_SUBNET"
    if [[ $MODE == offline ]]; then
      # kindnetd cannot be built offline (its image in the node is a placeholder): the bridge plugin
      # (Debian's CNI plugins in the node) gives pods addresses; kube-network-policies enforces policies
      echo "  disableDefaultCNI: true"
    fi
    echo "nodes:"
    echo "  - role: control-plane"
    if [[ $MODE == offline ]]; then echo "    image: $NODE_IMAGE"; fi
    echo "    extraPortMappings:"
    echo "      - containerPort: $THANOS_NODE_PORT"
    echo "        hostPort: $port"
    echo "        listenAddress: 127.0.0.1"
    echo "        protocol: TCP"
    if [[ $MODE == offline ]]; then
      echo "    extraMounts:"
      echo "      - hostPath: $STATE/cni/10-kci-bridge.conflist"
      echo "        containerPath: /etc/cni/net.d/10-kci-bridge.conflist"
      echo "        readOnly: true"
      # Kubernetes >= 1.35 refuses to run kubelet on cgroup v1 unless told to (this host has no v2)
      echo "kubeadmConfigPatches:"
      echo "  - |"
      echo "    kind: KubeletConfiguration"
      echo "    failCgroupV1: false"
    fi
  } >"$cfg"
}

wait_rollouts() {
  kc wait node --all --for=condition=Ready --timeout=180s >/dev/null \
    || { kc get nodes -o wide >&2 || true; die "the node did not become Ready within 180 s"; }
  log "node Ready ($(kc get nodes -o jsonpath='{.items[0].status.nodeInfo.kubeletVersion}, {.items[0].status.nodeInfo.containerRuntimeVersion}'))"
  local r
  local -a rollouts=("kube-system deployment/coredns" "local-path-storage deployment/local-path-provisioner")
  if [[ $MODE == offline ]]; then rollouts+=("kube-system daemonset/kube-network-policies"); else rollouts+=("kube-system daemonset/kindnet"); fi
  for r in "${rollouts[@]}"; do
    # shellcheck disable=SC2086 # "namespace kind/name"
    kc -n ${r% *} rollout status "${r#* }" --timeout=180s >/dev/null \
      || { kc -n "${r% *}" get pods -o wide >&2 || true; die "${r#* } did not become ready within 180 s"; }
    log "${r#* } ready"
  done
  local bad
  bad=$(kc -n kube-system get pods --no-headers | awk '$3 != "Running"' || true)
  [[ -z "$bad" ]] || die "kube-system pods not Running:"$'\n'"$bad"
}

up() {
  mkdir -p "$STATE"
  ensure_prereqs
  if cluster_exists; then
    if ! node_running && docker inspect "$NODE" >/dev/null 2>&1; then
      # e.g. after our Docker Engine was restarted: kind nodes come back with `docker start`
      log "node container $NODE is stopped; starting it"
      docker start "$NODE" >/dev/null || die "could not start $NODE"
      local i
      for i in $(seq 1 90); do healthy && break; sleep 2; done
    fi
    if healthy; then
      [[ $MODE == offline ]] && block_egress
      write_env
      stack
      log "cluster '$CLUSTER' is already up and healthy; env: $ENV_FILE"
      return 0
    fi
    die "cluster '$CLUSTER' exists but is not healthy (node container running: $(node_running && echo yes || echo no)); run \`scripts/kind.sh down\`, then \`scripts/kind.sh up\`"
  fi
  if [[ $MODE == offline ]] && ! docker image inspect "$NODE_IMAGE" >/dev/null 2>&1; then
    die "node image $NODE_IMAGE is missing after scripts/images.sh"
  fi
  if [[ $MODE == offline ]]; then
    ensure_network
  elif ! docker network inspect "$NETWORK" >/dev/null 2>&1; then
    : >"$STATE/created-network"   # kind creates it now; `down` removes it when nothing else uses it
  fi
  local port cfg="$STATE/kind-config.yaml"
  port=$(free_port)
  if [[ $MODE == offline ]]; then
    mkdir -p "$STATE/cni"
    sed "s#@NODE_POD_CIDR@#$NODE_POD_CIDR#" "$FILES/bridge.conflist.tmpl" >"$STATE/cni/10-kci-bridge.conflist"
  fi
  write_kind_config "$cfg" "$port"
  log "creating cluster '$CLUSTER' ($MODE; node port $THANOS_NODE_PORT -> 127.0.0.1:$port; log: $STATE/create.log)"
  if ! kind_ create cluster --name "$CLUSTER" --config "$cfg" --kubeconfig "$KUBECONFIG_FILE" --retain \
      >"$STATE/create.log" 2>&1; then
    tail -n 30 "$STATE/create.log" >&2
    if cluster_exists; then
      kind_ export logs "$STATE/logs" --name "$CLUSTER" >/dev/null 2>&1 || true
      kind_ delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
    fi
    die "kind create cluster failed (above; kind's log $STATE/create.log, node logs $STATE/logs)"
  fi
  write_env
  log "cluster created"
  if [[ $MODE == offline ]]; then
    sed "s#@IMAGE@#$NETPOL_IMAGE#" "$FILES/kube-network-policies.yaml" | kc apply -f - >/dev/null
    log "kube-network-policies applied"
  fi
  wait_rollouts
  stack
  log "cluster '$CLUSTER' is up: KUBECONFIG=$KUBECONFIG_FILE, THANOS_QUERY_URL=http://127.0.0.1:$port (env: $ENV_FILE)"
}

# The images the tests and a person exploring run (offline: loaded from our Engine, never pulled), and
# Thanos Receive + Query (tests-e2e/kind/thanos.yaml), Query published on THANOS_QUERY_URL.
stack() {
  if [[ $MODE == offline ]]; then
    # Thanos is built from the same release source as quay.io/thanos/thanos:<THANOS_VERSION>: tagged so,
    # the manifest is the same in both modes. Every other local image keeps its localhost/ name.
    docker tag "localhost/kci/thanos:$THANOS_VERSION" "quay.io/thanos/thanos:$THANOS_VERSION"
    local -a imgs=("quay.io/thanos/thanos:$THANOS_VERSION" "localhost/kci/prometheus:$PROMETHEUS3_VERSION"
      "localhost/kci/opencost:$OPENCOST_VERSION" "localhost/kci/debian:bookworm"
      "localhost/kubecost-allocation-exporter:$(sed -n 's/^__version__ = "\(.*\)"/\1/p' exporter/src/kubecost_allocation_exporter/__init__.py)")
    kind_ load docker-image --name "$CLUSTER" "${imgs[@]}" >"$STATE/load.log" 2>&1 \
      || { cat "$STATE/load.log" >&2; die "loading images into the node failed"; }
    log "images loaded: ${imgs[*]}"
  fi
  grep -q "image: quay.io/thanos/thanos:$THANOS_VERSION\$" tests-e2e/kind/thanos.yaml \
    || die "tests-e2e/kind/thanos.yaml must use quay.io/thanos/thanos:$THANOS_VERSION (tools/versions.env)"
  kc apply -f tests-e2e/kind/thanos.yaml >/dev/null
  local d
  for d in thanos-receive thanos-query; do
    kc -n thanos rollout status "deployment/$d" --timeout=180s >/dev/null \
      || { kc -n thanos get pods -o wide >&2 || true; die "$d did not become ready within 180 s"; }
  done
  local url i
  url="http://127.0.0.1:$(host_port)"
  for i in $(seq 1 30); do
    curl -fsS -m 2 "$url/-/ready" >/dev/null 2>&1 && { log "Thanos Receive + Query ready; Query at $url"; return 0; }
    sleep 1
  done
  die "Thanos Query is Ready in the cluster but $url/-/ready does not answer from this machine"
}

# ---------------------------------------------------------------- down, load, env, status

down() {
  if cluster_exists; then
    log "deleting cluster '$CLUSTER'"
    local out
    out=$(kind_ delete cluster --name "$CLUSTER" 2>&1) || die "kind delete cluster failed: $out"
  else
    log "no cluster '$CLUSTER'"
  fi
  if [[ -f "$STATE/created-network" ]] && docker network inspect "$NETWORK" >/dev/null 2>&1; then
    if [[ -z "$(docker network inspect -f '{{range .Containers}}{{.Name}} {{end}}' "$NETWORK")" ]]; then
      local br
      br=$(kind_bridge)
      docker network rm "$NETWORK" >/dev/null
      unblock_egress "$br"
      log "removed the docker network '$NETWORK' (created by this cluster's up) and its egress block"
    else
      log "kept the docker network '$NETWORK' (other containers use it)"
    fi
  fi
  unblock_egress   # rules left for bridges that no longer exist
  rm -rf "$STATE"
  log "removed $STATE"
}

load() {
  [[ $# -gt 0 ]] || die "usage: scripts/kind.sh load IMAGE..."
  cluster_exists || die "no cluster '$CLUSTER' (scripts/kind.sh up)"
  local img
  for img in "$@"; do
    docker image inspect "$img" >/dev/null 2>&1 || die "image '$img' is not in our Docker Engine ($DOCKER_HOST)"
  done
  kind_ load docker-image --name "$CLUSTER" "$@"
  log "loaded $* into '$CLUSTER'"
}

env_() {
  [[ -f "$ENV_FILE" ]] || die "no env file $ENV_FILE (scripts/kind.sh up)"
  echo "# $ENV_FILE"
  sed 's/^/export /' "$ENV_FILE"
}

status() {
  if ! cluster_exists; then echo "cluster '$CLUSTER': absent"; return 1; fi
  if healthy; then
    echo "cluster '$CLUSTER': up and healthy ($MODE mode); env: $ENV_FILE"
    kc get nodes -o wide
    kc get pods -A -o wide
    return 0
  fi
  echo "cluster '$CLUSTER': exists but NOT healthy (node container running: $(node_running && echo yes || echo no))"
  return 1
}

# ---------------------------------------------------------------- verify

verify() {
  healthy || die "cluster '$CLUSTER' is not up and healthy (scripts/kind.sh up)"
  local ns=kci-verify out i
  # The Python base image (scripts/images/10-base.sh), loaded into the node now: proves `load` too.
  # Offline the node image already carries busybox; online it is built and loaded as well.
  local -a build=(python) loads=("$API_IMAGE")
  if [[ $MODE == online ]]; then build+=(kind_local_path); loads+=("$BUSYBOX_IMAGE"); fi
  scripts/images.sh "${build[@]}" | sed 's/^/    /' || die "building the verify images failed (above)"
  load "${loads[@]}"
  kc delete namespace "$ns" --ignore-not-found --wait=true >/dev/null
  # pods are refused until kube-controller-manager has made the namespace's default ServiceAccount
  kc create namespace "$ns" >/dev/null
  for i in $(seq 1 60); do kc -n "$ns" get serviceaccount default >/dev/null 2>&1 && break; sleep 1; done
  sed -e "s#@IMAGE@#$BUSYBOX_IMAGE#" -e "s#@API_IMAGE@#$API_IMAGE#" "$FILES/verify.yaml" | kc apply -f - >/dev/null
  log "verify: workloads applied (namespace $ns; images $BUSYBOX_IMAGE, $API_IMAGE; imagePullPolicy Never)"

  kc -n "$ns" wait pod/dns-api --for=jsonpath='{.status.phase}'=Succeeded --timeout=120s >/dev/null \
    || { kc -n "$ns" logs dns-api >&2 || true; die "verify: DNS / API Service check failed"; }
  out=$(kc -n "$ns" logs dns-api)
  grep -q '^resolved kubernetes.default.svc.cluster.local ' <<<"$out" || die "verify: DNS did not resolve: $out"
  grep -q '"gitVersion"' <<<"$out" || die "verify: no /version answer through the Service: $out"
  log "verify: DNS: $(head -n1 <<<"$out"); API through its Service (TLS verified, pod token): $(grep -o '"gitVersion": *"[^"]*"' <<<"$out")"

  kc -n "$ns" wait pod/pvc-writer --for=jsonpath='{.status.phase}'=Succeeded --timeout=120s >/dev/null \
    || { kc -n "$ns" describe pvc data pod/pvc-writer >&2 || true; die "verify: the PVC pod did not succeed"; }
  [[ "$(kc -n "$ns" get pvc data -o jsonpath='{.status.phase}')" == Bound ]] || die "verify: PVC not Bound"
  log "verify: PVC bound by $(kc get storageclass -o jsonpath='{.items[?(@.metadata.annotations.storageclass\.kubernetes\.io/is-default-class=="true")].provisioner}') and written ($(kc -n "$ns" logs pvc-writer))"

  kc -n "$ns" wait pod/server pod/client-allowed pod/client-denied --for=condition=Ready --timeout=120s >/dev/null \
    || die "verify: NetworkPolicy pods not Ready"
  # (busybox `timeout`, not `wget -T`: Debian's busybox-static 1.35 wget segfaults with -T)
  fetch() { kc -n "$ns" exec "$1" -- timeout 5 wget -q -O- "http://server.$ns.svc.cluster.local:8080/" 2>/dev/null; }
  for i in client-allowed client-denied; do
    [[ "$(fetch "$i")" == hello-from-server ]] || die "verify: $i cannot reach the server before any policy"
  done
  log "verify: both clients reach the server through its Service before the policy"
  kc apply -f "$FILES/verify-networkpolicy.yaml" >/dev/null
  local blocked=0
  for i in $(seq 1 30); do
    if ! fetch client-denied >/dev/null; then blocked=1; break; fi
    sleep 1
  done
  [[ $blocked == 1 ]] || die "verify: NetworkPolicy NOT enforced: client-denied still reaches the server after 30 s"
  [[ "$(fetch client-allowed)" == hello-from-server ]] || die "verify: NetworkPolicy blocks the allowed client too"
  fetch client-denied >/dev/null && die "verify: client-denied got through on a second try"
  log "verify: NetworkPolicy enforced (client-allowed gets the page, client-denied times out)"
  kc delete namespace "$ns" --wait=false >/dev/null
  log "verify: all checks passed"
}

# ---------------------------------------------------------------- main

usage() { awk 'NR > 1 && /^# Offline mode uses/ {exit} NR > 1 {sub(/^# ?/, ""); print}' "$0" >&2; exit 2; }
cmd=${1:-}
[[ $# -gt 0 ]] && shift
case "$cmd" in
  up | down | status | verify | env)
    [[ $# -eq 0 ]] || die "'$cmd' takes no arguments (got: $*)"
    ;;
  load) ;;
  *) usage ;;
esac
# one change at a time per cluster (up, down, load, verify); readers (env, status) need no lock
mkdir -p "$KCI_CACHE/kind"
if [[ $cmd == up || $cmd == down || $cmd == load || $cmd == verify ]]; then
  exec 7>"$KCI_CACHE/kind/.$CLUSTER.lock"
  flock -n 7 || { log "another scripts/kind.sh is working on '$CLUSTER'; waiting"; flock 7; }
fi
case "$cmd" in
  up) up ;;
  down) down ;;
  load) load "$@" ;;
  env) env_ ;;
  status) status ;;
  verify) verify ;;
esac
