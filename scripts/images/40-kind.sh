# shellcheck shell=bash
# kind, offline (1/3): the kind binary, the node's runtime and Kubernetes node binaries, and the
# node base image. Sourced by scripts/images.sh (helpers, BIN, IMGBUILD, versions come from there);
# 41-kind-images.sh builds the images the node carries, 42-kind-node.sh the node image itself.
# The whole design and each workaround is explained in tests-e2e/kind/README.md.
#
# Nothing here reaches a registry: binaries come from the Go module proxy (built with the machine's
# go, GOTOOLCHAIN=local), packages from the Debian mirror (mmdebstrap), and kind's own node files
# (entrypoint, systemd units, containerd config) from the kind module source in GOMODCACHE.

# Persistent outputs (binaries the node image is assembled from); IMGBUILD is scratch.
KIND_OUT="$KCI_CACHE/build/kind"
# The node base image (kind's images/base, rebuilt from Debian packages + our containerd)
KIND_BASE_IMAGE="localhost/kci/kind-base:$KIND_VERSION-containerd-$CONTAINERD_VERSION"
# crictl follows the Kubernetes minor (cri-tools releases v1.<minor>.0 with each Kubernetes minor)
KIND_CRICTL_VERSION="v1.$(echo "${KUBERNETES_VERSION#v1.}" | cut -d. -f1).0"
KIND_CLUSTER_FILES="tests-e2e/kind/cluster"

IMAGES+=(
  "kind|$KIND_VERSION|1.5 min|"
  "kind_runtime|containerd $CONTAINERD_VERSION, crictl $KIND_CRICTL_VERSION|3 min|"
  "kind_node_bins|kubelet/kubeadm/kube-proxy $KUBERNETES_VERSION|3 min|tools/go/kubernetes/go.mod tools/go/kubernetes/go.sum"
  "kind_base|$KIND_BASE_IMAGE|2 min|$KIND_CLUSTER_FILES/node-entrypoint.sh"
)

# ---------------------------------------------------------------- helpers shared by 40/41/42-kind

kind_gomod_dir() { # module@version -> its extracted source dir in GOMODCACHE (downloads it if needed)
  GOFLAGS=-mod=mod go mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p'
}
# kind_module_copy module@version dest : a writable copy of a module's source. Needed for modules
# `go install` refuses (exclude/replace directives in their go.mod) or that we patch.
kind_module_copy() {
  local src
  src=$(kind_gomod_dir "$1")
  [[ -n "$src" && -d "$src" ]] || { echo "cannot download $1 from the Go module proxy"; return 1; }
  rm -rf "$2"; mkdir -p "$(dirname "$2")"
  cp -r "$src" "$2"
  chmod -R u+w "$2"
}
# Version ldflags for Kubernetes binaries, exactly as scripts/tools.sh stamps the control plane
# (kubelet and kubeadm report them; kubeadm derives its default image tags from them).
kind_k8s_ldflags() {
  local v=$KUBERNETES_VERSION minor ldf="-s -w" p
  minor=${v#v1.}; minor=${minor%%.*}
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldf+=" -X $p.gitVersion=$v -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
    ldf+=" -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  echo "$ldf"
}
# kind_skeleton dir : the few files a FROM-scratch image of a static binary wants (users for
# USER 65532/65535, hosts lookup order, a /tmp)
kind_skeleton() {
  local d=$1
  mkdir -p "$d/etc" "$d/tmp" "$d/usr/local/bin"
  chmod 1777 "$d/tmp"
  printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' 'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' \
    'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >"$d/etc/passwd"
  printf '%s\n' 'root:x:0:' 'nogroup:x:65534:' 'nonroot:x:65532:' >"$d/etc/group"
  echo 'hosts: files dns' >"$d/etc/nsswitch.conf"
}
# kind_add_stopsignal src-ref dst-ref signal : `docker import` refuses --change STOPSIGNAL, a
# one-line Dockerfile build from the local image adds it (DOCKER_BUILDKIT=0: no registry involved)
kind_add_stopsignal() {
  local ctx="$IMGBUILD/kind-stopsignal"
  rm -rf "$ctx"; mkdir -p "$ctx"
  printf 'FROM %s\nSTOPSIGNAL %s\n' "$1" "$3" >"$ctx/Dockerfile"
  docker build -q -t "$2" "$ctx"
  rm -rf "$ctx"
}

# ---------------------------------------------------------------- kind

build_kind() {
  local tmp="$IMGBUILD/kind-gobin"
  rm -rf "$tmp"; mkdir -p "$tmp"
  GOBIN="$tmp" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kind@$KIND_VERSION"
  install -m 0755 "$tmp/kind" "$BIN/kind"
  rm -rf "$tmp"
  "$BIN/kind" version
}
check_kind() { "$BIN/kind" version | grep -F "kind $KIND_VERSION " >/dev/null; }

# ---------------------------------------------------------------- containerd, crictl

build_kind_runtime() {
  local src="$IMGBUILD/containerd-src" out="$KIND_OUT/runtime" P=github.com/containerd/containerd/v2
  rm -rf "$out"; mkdir -p "$out"
  # `go install` refuses containerd ("contains one or more exclude directives"): build it from a
  # copy of its module source with the build tags of kind's base image (no btrfs/zfs/devmapper
  # snapshotters). Debian's containerd 1.6 cannot be used: kind's node-image build runs
  # `ctr info`, which 1.6 does not have.
  kind_module_copy "$P@$CONTAINERD_VERSION" "$src"
  # -mod=mod: the module zip holds only vendor/modules.txt, not the vendored code
  (cd "$src" && CGO_ENABLED=0 go build -mod=mod -trimpath -tags "no_aufs no_btrfs no_devmapper no_zfs" \
    -ldflags "-s -w -X $P/version.Version=$CONTAINERD_VERSION -X $P/version.Revision=go-module-proxy -X $P/version.Package=github.com/containerd/containerd" \
    -o "$out/" ./cmd/containerd ./cmd/ctr ./cmd/containerd-shim-runc-v2)
  rm -rf "$src"
  # crictl: kind's `load docker-image` asks it whether an image is already present; handy in a node
  local tmp="$IMGBUILD/crictl-gobin"
  rm -rf "$tmp"; mkdir -p "$tmp"
  GOBIN="$tmp" CGO_ENABLED=0 go install -trimpath \
    -ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$KIND_CRICTL_VERSION" \
    "sigs.k8s.io/cri-tools/cmd/crictl@$KIND_CRICTL_VERSION"
  install -m 0755 "$tmp/crictl" "$out/crictl"
  rm -rf "$tmp"
  "$out/containerd" --version
  "$out/crictl" --version
}
check_kind_runtime() {
  local out="$KIND_OUT/runtime"
  "$out/containerd" --version | grep -F " $CONTAINERD_VERSION " >/dev/null \
    && "$out/ctr" --version | grep -F "$CONTAINERD_VERSION" >/dev/null \
    && [[ -x "$out/containerd-shim-runc-v2" ]] \
    && "$out/crictl" --version | grep -F "$KIND_CRICTL_VERSION" >/dev/null
}

# ---------------------------------------------------------------- kubelet, kubeadm, kube-proxy

build_kind_node_bins() {
  # From the same wrapper module as the control plane tools.sh builds (tool directives in
  # tools/go/kubernetes/go.mod), so every Kubernetes binary comes from one module graph.
  local out="$KIND_OUT/k8s"
  rm -rf "$out"; mkdir -p "$out"
  (cd tools/go/kubernetes && CGO_ENABLED=0 go build -trimpath -ldflags "$(kind_k8s_ldflags)" -o "$out/" \
    k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kubeadm k8s.io/kubernetes/cmd/kube-proxy)
  "$out/kubelet" --version
  "$out/kubeadm" version -o short
  "$out/kube-proxy" --version
}
check_kind_node_bins() {
  local out="$KIND_OUT/k8s"
  "$out/kubelet" --version | grep -xF "Kubernetes $KUBERNETES_VERSION" >/dev/null \
    && [[ "$("$out/kubeadm" version -o short)" == "$KUBERNETES_VERSION" ]] \
    && "$out/kube-proxy" --version | grep -xF "Kubernetes $KUBERNETES_VERSION" >/dev/null
}

# ---------------------------------------------------------------- node base image

# What kind's images/base/Dockerfile installs, from Debian bookworm packages (kind builds runc and
# the CNI plugins from source; Debian's runc 1.1 and containernetworking-plugins 1.1 serve here).
# Left out: nfs-common, open-iscsi, fuse-overlayfs (network storage and rootless mode; unused).
KIND_BASE_PACKAGES=(
  systemd dbus
  conntrack iptables nftables iproute2 ethtool util-linux mount kmod
  libseccomp2 pigz
  bash ca-certificates curl jq procps
  runc containernetworking-plugins
)

build_kind_base() {
  local dir="$IMGBUILD/kind-base-rootfs" kindsrc files tmpref="localhost/kci/kind-base:build"
  kindsrc=$(kind_gomod_dir "sigs.k8s.io/kind@$KIND_VERSION")
  files="$kindsrc/images/base/files"
  [[ -d $files ]] || { echo "kind module source lacks images/base/files ($kindsrc)"; return 1; }
  echo "== mmdebstrap bookworm: ${KIND_BASE_PACKAGES[*]}"
  debian_rootfs "$dir" minbase "${KIND_BASE_PACKAGES[@]}"

  echo "== kind's node files (images/base/files of kind $KIND_VERSION), modes as its Dockerfile sets them"
  install -m 0755 "$files"/usr/local/bin/* "$dir/usr/local/bin/"
  mkdir -p "$dir/kind/bin" "$dir/LICENSES" "$dir/etc/containerd" "$dir/etc/default" "$dir/etc/sysctl.d" \
    "$dir/etc/systemd/system/kubelet.service.d"
  install -m 0644 "$files"/kind/README.txt "$dir/kind/"
  install -m 0755 "$files"/kind/bin/* "$dir/kind/bin/"
  install -m 0644 "$files"/LICENSES/* "$dir/LICENSES/"
  install -m 0644 "$files"/etc/crictl.yaml "$dir/etc/"
  install -m 0644 "$files"/etc/containerd/* "$dir/etc/containerd/"
  install -m 0644 "$files"/etc/default/* "$dir/etc/default/"
  install -m 0644 "$files"/etc/sysctl.d/* "$dir/etc/sysctl.d/"
  find "$files/etc/systemd/system" -maxdepth 1 -type f -exec install -m 0644 {} "$dir/etc/systemd/system/" \;
  install -m 0644 "$files"/etc/systemd/system/kubelet.service.d/* "$dir/etc/systemd/system/kubelet.service.d/"

  # Our entrypoint prelude (cgroup v1 mounts read-write without --privileged), then kind's own
  mv "$dir/usr/local/bin/entrypoint" "$dir/usr/local/bin/kind-entrypoint"
  install -m 0755 "$KIND_CLUSTER_FILES/node-entrypoint.sh" "$dir/usr/local/bin/entrypoint"

  # runc inside the node cannot write a negative oom_score_adj (same missing capability as above):
  # sandboxes fail with "can't get final child's PID from pipe: EOF" unless containerd is told not
  # to ask for one (what kind's entrypoint sets for rootless nodes). kubelet then only logs warnings.
  grep -q '^ *restrict_oom_score_adj = false' "$dir/etc/containerd/config.toml"
  sed -i 's/^\( *\)restrict_oom_score_adj = false/\1restrict_oom_score_adj = true/' "$dir/etc/containerd/config.toml"

  echo "== the systemd clean-up of kind's Dockerfile"
  rm -f "$dir"/lib/systemd/system/sysinit.target.wants/systemd-tmpfiles-setup.service \
    "$dir"/lib/systemd/system/multi-user.target.wants/* "$dir"/etc/systemd/system/*.wants/* \
    "$dir"/lib/systemd/system/local-fs.target.wants/* "$dir"/lib/systemd/system/sockets.target.wants/*udev* \
    "$dir"/lib/systemd/system/sockets.target.wants/*initctl* "$dir"/lib/systemd/system/basic.target.wants/*
  echo "ReadKMsg=no" >>"$dir/etc/systemd/journald.conf"
  ln -sf /lib/systemd/systemd "$dir/sbin/init"
  # the rootfs's own systemctl (offline: it only makes the unit symlinks)
  chroot "$dir" systemctl enable kubelet.service containerd.service undo-mount-hacks.service
  chroot "$dir" systemctl mask systemd-binfmt.service
  mkdir -p "$dir/etc/kubernetes/manifests" "$dir/etc/cni/net.d"

  echo "== containerd $CONTAINERD_VERSION, crictl; CNI plugins where containerd looks (/opt/cni/bin)"
  install -m 0755 "$KIND_OUT"/runtime/{containerd,ctr,containerd-shim-runc-v2,crictl} "$dir/usr/local/bin/"
  mkdir -p "$dir/opt/cni"
  ln -sfn /usr/lib/cni "$dir/opt/cni/bin"
  # As kind's Dockerfile: containerd's default OCI spec, plus kind's createContainer hook, minus rlimits
  chroot "$dir" /bin/sh -ec "ctr oci spec \
    | jq '.hooks.createContainer[.hooks.createContainer| length] |= . + {\"path\": \"/kind/bin/mount-product-files.sh\"}' \
    | jq 'del(.process.rlimits)' > /etc/containerd/cri-base.json"

  # no apt caches, documentation or machine identity in the image
  rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/* "$dir"/var/log/* "$dir"/tmp/* "$dir"/var/tmp/*
  : >"$dir/etc/machine-id"

  echo "== import"
  # `container=docker` tells systemd it runs in a container; SIGRTMIN+3 is systemd's halt signal
  import_rootfs "$dir" "$tmpref" --change 'ENV container=docker' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]'
  kind_add_stopsignal "$tmpref" "$KIND_BASE_IMAGE" 'SIGRTMIN+3'
  docker rmi "$tmpref" >/dev/null
  rm -rf "$dir"
  docker image inspect -f '{{.Id}} {{.Size}} bytes, stop signal {{.Config.StopSignal}}' "$KIND_BASE_IMAGE"
}
check_kind_base() {
  image_exists "$KIND_BASE_IMAGE" || return 1
  [[ "$(docker image inspect -f '{{.Config.StopSignal}}' "$KIND_BASE_IMAGE")" == 'SIGRTMIN+3' ]] || return 1
  # the runtime inside is the one we built, and the node files are where kind expects them
  docker run --rm --entrypoint /bin/sh "$KIND_BASE_IMAGE" -ec "
    containerd --version | grep -F ' $CONTAINERD_VERSION '
    runc --version | head -n1
    test -x /opt/cni/bin/bridge && test -x /opt/cni/bin/host-local && test -x /opt/cni/bin/loopback
    test -x /usr/local/bin/kind-entrypoint && test -f /etc/containerd/cri-base.json
    grep -q 'restrict_oom_score_adj = true' /etc/containerd/config.toml
    test -L /etc/systemd/system/multi-user.target.wants/kubelet.service"
}
