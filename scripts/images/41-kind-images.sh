# shellcheck shell=bash
# kind, offline (2/3): every image the kind node carries, built locally. Sourced by scripts/images.sh
# after 40-kind.sh (its helpers and KIND_OUT are used here).
#
# Tags: kubeadm and kind name the images they run by their upstream references (registry.k8s.io/...,
# docker.io/kindest/...). No registry is reachable, so our builds carry exactly those references;
# the references are read from the built kubeadm (`kubeadm config images list`) and from kind's module
# source, never typed here. Where the version we build differs from the one the reference names,
# the image is a substitution, said so below and in tests-e2e/kind/README.md. Each image also gets a
# localhost/kci/... tag with the version really inside.

KIND_PATH_ENV='ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
KIND_BUSYBOX_IMAGE=localhost/kci/busybox:bookworm
KIND_NETPOL_IMAGE="localhost/kci/kube-network-policies:$KUBE_NETWORK_POLICIES_VERSION"

IMAGES+=(
  "kind_pause|k8s.io/kubernetes $KUBERNETES_VERSION build/pause|<1 min|"
  "kind_k8s_images|kube-apiserver/controller-manager/scheduler/proxy $KUBERNETES_VERSION|1.5 min|"
  "kind_etcd|etcd $ETCD_VERSION|<1 min|"
  "kind_coredns|coredns $COREDNS_VERSION|3.5 min|"
  "kind_network_policies|kube-network-policies $KUBE_NETWORK_POLICIES_VERSION|2 min|$KIND_CLUSTER_FILES/kube-network-policies-xt-nfqueue.patch"
  "kind_local_path|local-path-provisioner $LOCAL_PATH_PROVISIONER_VERSION + busybox helper|1.5 min|"
  "kind_kindnetd_placeholder|placeholder|<1 min|"
)

# kind_kubeadm_image name : the reference kubeadm (the one we built) runs for a component,
# e.g. etcd -> registry.k8s.io/etcd:3.6.8-0
kind_kubeadm_image() {
  local ref
  ref=$("$KIND_OUT/k8s/kubeadm" config images list --kubernetes-version "$KUBERNETES_VERSION" 2>/dev/null \
    | grep -E "/$1:" | sed -n 1p)
  [[ -n "$ref" ]] || { echo "kubeadm $KUBERNETES_VERSION names no '$1' image (is kind_node_bins built?)" >&2; return 1; }
  echo "$ref"
}
# kind_source_image pattern : an image reference in kind's own source (node-image build constants,
# base containerd config), e.g. kindnetd -> docker.io/kindest/kindnetd:v2025...
kind_source_image() {
  local src ref
  src=$(kind_gomod_dir "sigs.k8s.io/kind@$KIND_VERSION")
  case $1 in
    sandbox) ref=$(sed -n 's/^ *sandbox_image = "\(.*\)"/\1/p' "$src/images/base/files/etc/containerd/config.toml") ;;
    kindnetd) ref=$(sed -n 's/^const kindnetdImage = "\(.*\)"/\1/p' "$src/pkg/build/nodeimage/const_cni.go") ;;
    storage-provisioner) ref=$(sed -n 's/^const storageProvisionerImage = "\(.*\)"/\1/p' "$src/pkg/build/nodeimage/const_storage.go") ;;
    storage-helper) ref=$(sed -n 's/^const storageHelperImage = "\(.*\)"/\1/p' "$src/pkg/build/nodeimage/const_storage.go") ;;
  esac
  [[ -n "${ref:-}" ]] || { echo "cannot find kind's $1 image reference in $src" >&2; return 1; }
  echo "$ref"
}
# kind_static_image dir ref [docker-import --change ...] : import a skeleton + static binaries tree
kind_static_image() {
  local dir=$1 ref=$2; shift 2
  import_rootfs "$dir" "$ref" --change "$KIND_PATH_ENV" "$@"
  rm -rf "$dir"
}
kind_tag() { local src=$1 t; shift; for t in "$@"; do docker tag "$src" "$t"; done; }

# ---------------------------------------------------------------- pause

build_kind_pause() {
  local dir="$IMGBUILD/kind-pause-rootfs" src kubeadm_ref sandbox_ref ver
  src="$(kind_gomod_dir "k8s.io/kubernetes@$KUBERNETES_VERSION")/build/pause/linux/pause.c"
  kubeadm_ref=$(kind_kubeadm_image pause); sandbox_ref=$(kind_source_image sandbox)
  ver=${kubeadm_ref##*:}
  rm -rf "$dir"; mkdir -p "$dir"
  # As Kubernetes' build/pause/Makefile builds it (static, so the image needs nothing else)
  gcc -Os -Wall -Werror -static -DVERSION="v$ver-kci" -o "$dir/pause" "$src"
  strip "$dir/pause"
  kind_static_image "$dir" "localhost/kci/pause:$ver" --change 'ENTRYPOINT ["/pause"]' --change 'USER 65535:65535'
  # kubeadm's reference, and the sandbox image kind's containerd config names (kind replaces
  # kubeadm's pause with it; both are this same pause.c)
  kind_tag "localhost/kci/pause:$ver" "$kubeadm_ref" "$sandbox_ref"
  echo "pause $ver tagged $kubeadm_ref $sandbox_ref"
}
check_kind_pause() {
  local ref; ref=$(kind_kubeadm_image pause) || return 1
  image_exists "$ref" && image_exists "$(kind_source_image sandbox)" \
    && [[ "$(docker image inspect -f '{{json .Config.Entrypoint}} {{.Config.User}}' "$ref")" == '["/pause"] 65535:65535' ]] \
    && docker run --rm "$ref" -v 2>&1 | grep -F "pause.c v${ref##*:}-kci" >/dev/null
}

# ---------------------------------------------------------------- Kubernetes component images

KIND_CP_COMPONENTS=(kube-apiserver kube-controller-manager kube-scheduler)
build_kind_k8s_images() {
  local c dir ref
  for c in "${KIND_CP_COMPONENTS[@]}"; do
    "$BIN/$c" --version 2>/dev/null | grep -xF "Kubernetes $KUBERNETES_VERSION" >/dev/null \
      || { echo "$BIN/$c $KUBERNETES_VERSION is missing: run scripts/tools.sh kube_control_plane"; return 1; }
  done
  for c in "${KIND_CP_COMPONENTS[@]}"; do
    dir="$IMGBUILD/kind-$c-rootfs"; ref=$(kind_kubeadm_image "$c")
    rm -rf "$dir"; kind_skeleton "$dir"
    install -m 0755 "$BIN/$c" "$dir/usr/local/bin/$c"
    kind_static_image "$dir" "$ref" --change "ENTRYPOINT [\"/usr/local/bin/$c\"]"
    kind_tag "$ref" "localhost/kci/$c:$KUBERNETES_VERSION"
    echo "$c -> $ref"
  done
  # kube-proxy (iptables mode, kind's default) runs iptables-restore, conntrack and, for its
  # nftables mode, nft: a Debian root filesystem with them (Debian's iptables is iptables-nft, the
  # mode kind's node entrypoint selects on a fresh node)
  dir="$IMGBUILD/kind-kube-proxy-rootfs"; ref=$(kind_kubeadm_image kube-proxy)
  debian_rootfs "$dir" minbase iptables nftables conntrack ipset kmod
  install -m 0755 "$KIND_OUT/k8s/kube-proxy" "$dir/usr/local/bin/kube-proxy"
  rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/* "$dir"/var/log/*
  kind_static_image "$dir" "$ref" --change 'ENTRYPOINT ["/usr/local/bin/kube-proxy"]'
  kind_tag "$ref" "localhost/kci/kube-proxy:$KUBERNETES_VERSION"
  echo "kube-proxy -> $ref"
}
check_kind_k8s_images() {
  local c ref
  for c in "${KIND_CP_COMPONENTS[@]}" kube-proxy; do
    ref=$(kind_kubeadm_image "$c") || return 1
    docker run --rm "$ref" --version | grep -xF "Kubernetes $KUBERNETES_VERSION" >/dev/null || return 1
  done
  docker run --rm --entrypoint /bin/sh "$(kind_kubeadm_image kube-proxy)" -ec \
    'iptables --version && iptables-restore --version && conntrack --version && nft --version' >/dev/null
}

# ---------------------------------------------------------------- etcd

build_kind_etcd() {
  local dir="$IMGBUILD/kind-etcd-rootfs" ref
  "$BIN/etcd" --version 2>/dev/null | grep -F "etcd Version: ${ETCD_VERSION#v}" >/dev/null \
    || { echo "$BIN/etcd $ETCD_VERSION is missing: run scripts/tools.sh etcd"; return 1; }
  # SUBSTITUTION: kubeadm names its tested etcd (e.g. 3.6.8-0); ours is ETCD_VERSION (the same 3.6
  # minor, the newer patch the project pins), tagged with kubeadm's reference so kubeadm runs it.
  ref=$(kind_kubeadm_image etcd)
  rm -rf "$dir"; kind_skeleton "$dir"; mkdir -p "$dir/var/lib/etcd"
  install -m 0755 "$BIN/etcd" "$dir/usr/local/bin/etcd"
  kind_static_image "$dir" "localhost/kci/etcd:$ETCD_VERSION" --change 'ENTRYPOINT ["/usr/local/bin/etcd"]'
  kind_tag "localhost/kci/etcd:$ETCD_VERSION" "$ref"
  echo "etcd $ETCD_VERSION tagged $ref"
}
check_kind_etcd() {
  local ref; ref=$(kind_kubeadm_image etcd) || return 1
  docker run --rm "$ref" --version | grep -F "etcd Version: ${ETCD_VERSION#v}" >/dev/null
}

# ---------------------------------------------------------------- coredns

build_kind_coredns() {
  local dir="$IMGBUILD/kind-coredns-rootfs" tmp="$IMGBUILD/coredns-gobin" ref
  rm -rf "$tmp"; mkdir -p "$tmp"
  GOBIN="$tmp" CGO_ENABLED=0 go install -trimpath \
    -ldflags "-s -w -X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION" \
    "github.com/coredns/coredns@$COREDNS_VERSION"
  # SUBSTITUTION: kubeadm names a newer CoreDNS (e.g. v1.14.2); ours is COREDNS_VERSION from the
  # Go proxy, tagged with kubeadm's reference. Every plugin kubeadm's Corefile uses exists in it.
  # Runs as root (upstream: nonroot + a file capability that `docker import` would not carry):
  # kubeadm's Deployment drops every capability but NET_BIND_SERVICE, which is all it needs for :53.
  ref=$(kind_kubeadm_image coredns)
  rm -rf "$dir"; kind_skeleton "$dir"
  install -m 0755 "$tmp/coredns" "$dir/coredns"
  rm -rf "$tmp"
  kind_static_image "$dir" "localhost/kci/coredns:$COREDNS_VERSION" --change 'ENTRYPOINT ["/coredns"]' \
    --change 'EXPOSE 53 53/udp'
  kind_tag "localhost/kci/coredns:$COREDNS_VERSION" "$ref"
  echo "coredns $COREDNS_VERSION tagged $ref"
}
check_kind_coredns() {
  local ref; ref=$(kind_kubeadm_image coredns) || return 1
  docker run --rm "$ref" -version | grep -F "CoreDNS-${COREDNS_VERSION#v}" >/dev/null
}

# ---------------------------------------------------------------- kube-network-policies

build_kind_network_policies() {
  local src="$IMGBUILD/kube-network-policies-src" dir="$IMGBUILD/kind-netpol-rootfs"
  # The NetworkPolicy enforcer kindnetd embeds, run as its own DaemonSet (the offline cluster uses
  # the bridge CNI plugin, which enforces nothing). Patched so it works on kernels without
  # CONFIG_NFT_QUEUE (the patch file says why); built from a copy of its module source.
  kind_module_copy "sigs.k8s.io/kube-network-policies@$KUBE_NETWORK_POLICIES_VERSION" "$src"
  patch -d "$src" -p1 <"$KIND_CLUSTER_FILES/kube-network-policies-xt-nfqueue.patch"
  rm -rf "$dir"; kind_skeleton "$dir"; mkdir -p "$dir/bin"
  (cd "$src" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$dir/bin/netpol" ./cmd)
  rm -rf "$src"
  kind_static_image "$dir" "$KIND_NETPOL_IMAGE" --change 'CMD ["/bin/netpol"]'
  echo "kube-network-policies $KUBE_NETWORK_POLICIES_VERSION (xt NFQUEUE patch) -> $KIND_NETPOL_IMAGE"
}
check_kind_network_policies() {
  image_exists "$KIND_NETPOL_IMAGE" \
    && docker run --rm "$KIND_NETPOL_IMAGE" /bin/netpol --help 2>&1 | grep -F 'Usage: kube-network-policies' >/dev/null
}

# ---------------------------------------------------------------- local-path-provisioner + helper

build_kind_local_path() {
  local dir="$IMGBUILD/kind-local-path-rootfs" tmp="$IMGBUILD/local-path-gobin" bb="$IMGBUILD/busybox-extract"
  local prov_ref helper_ref a
  prov_ref=$(kind_source_image storage-provisioner); helper_ref=$(kind_source_image storage-helper)
  # The provisioner kind installs as the default StorageClass `standard`. SUBSTITUTION: kind's image
  # is its own build of rancher/local-path-provisioner; ours is LOCAL_PATH_PROVISIONER_VERSION from
  # the Go proxy, tagged with the reference kind's manifest (/kind/manifests/default-storage.yaml) uses.
  rm -rf "$tmp"; mkdir -p "$tmp"
  GOBIN="$tmp" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w -X main.VERSION=$LOCAL_PATH_PROVISIONER_VERSION" \
    "github.com/rancher/local-path-provisioner@$LOCAL_PATH_PROVISIONER_VERSION"
  rm -rf "$dir"; kind_skeleton "$dir"
  install -m 0755 "$tmp/local-path-provisioner" "$dir/usr/local/bin/local-path-provisioner"
  rm -rf "$tmp"
  kind_static_image "$dir" "localhost/kci/local-path-provisioner:$LOCAL_PATH_PROVISIONER_VERSION" \
    --change 'ENTRYPOINT ["/usr/local/bin/local-path-provisioner"]'
  kind_tag "localhost/kci/local-path-provisioner:$LOCAL_PATH_PROVISIONER_VERSION" "$prov_ref"

  # The helper pod runs kind's setup/teardown scripts (`sh`, `mkdir -m 0777 -p`, `rm -rf`); kind's
  # helper is exactly those binaries. Ours: Debian's busybox-static (one static binary, every
  # applet linked), which doubles as the small test image of the cluster checks.
  debian_rootfs "$bb" extract busybox-static
  rm -rf "$dir"; kind_skeleton "$dir"; mkdir -p "$dir/bin"
  install -m 0755 "$bb/bin/busybox" "$dir/bin/busybox"
  for a in $("$dir/bin/busybox" --list); do
    [[ -e "$dir/bin/$a" ]] || ln -s busybox "$dir/bin/$a"
  done
  rm -rf "$bb"
  import_rootfs "$dir" "$KIND_BUSYBOX_IMAGE" --change 'ENV PATH=/bin' --change 'CMD ["sh"]'
  rm -rf "$dir"
  kind_tag "$KIND_BUSYBOX_IMAGE" "$helper_ref"
  echo "local-path-provisioner $LOCAL_PATH_PROVISIONER_VERSION -> $prov_ref; busybox helper -> $helper_ref"
}
check_kind_local_path() {
  local prov helper
  prov=$(kind_source_image storage-provisioner) && helper=$(kind_source_image storage-helper) || return 1
  docker run --rm "$prov" --version 2>&1 | grep -F "$LOCAL_PATH_PROVISIONER_VERSION" >/dev/null \
    && docker run --rm "$helper" sh -ec 'd=/tmp/x/y; mkdir -m 0777 -p "$d"; rm -rf /tmp/x; nc --help 2>&1 | grep -q Usage; nslookup --help 2>&1 | grep -q Usage'
}

# ---------------------------------------------------------------- kindnetd placeholder

build_kind_kindnetd_placeholder() {
  local ref ctx="$IMGBUILD/kind-kindnetd-placeholder"
  ref=$(kind_source_image kindnetd)
  # PLACEHOLDER, never run: kind's node-image build insists on carrying its default CNI image, and
  # kindnetd cannot be built here (the Go proxy serves neither github.com/aojea/kindnet nor kind's
  # images/kindnetd module). The offline cluster sets disableDefaultCNI, so kind never applies the
  # kindnetd manifest; if anything did start it, it fails at once saying why.
  rm -rf "$ctx"; mkdir -p "$ctx"
  cat >"$ctx/Dockerfile" <<EOF
FROM $KIND_BUSYBOX_IMAGE
LABEL org.opencontainers.image.description="placeholder for $ref: kindnetd is not built offline; the cluster disables kind's default CNI"
ENTRYPOINT ["/bin/sh", "-c", "echo 'kci: placeholder for $ref, which cannot be built offline; this cluster must run with disableDefaultCNI (scripts/kind.sh)' >&2; exit 1"]
EOF
  docker build -q -t "$ref" "$ctx"
  rm -rf "$ctx"
  echo "placeholder -> $ref"
}
check_kind_kindnetd_placeholder() {
  local ref; ref=$(kind_source_image kindnetd) || return 1
  image_exists "$ref" && ! docker run --rm "$ref" >/dev/null 2>&1
}
