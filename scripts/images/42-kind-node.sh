# shellcheck shell=bash
# kind, offline (3/3): the node image localhost/kci/kind-node:<KUBERNETES_VERSION>, made by kind's
# own `kind build node-image --type file` from a Kubernetes server tarball we assemble and the base
# image of 40-kind.sh. Sourced by scripts/images.sh after 40-kind.sh and 41-kind-images.sh.
#
# `kind build node-image` loads the image archives of the tarball into the node's containerd and
# *pulls* every other image it needs (kubeadm's images, kindnetd, the local-path images), which fails
# offline. It counts as already built only the tags it reads from each archive's first metadata entry
# (`repositories` if it comes first, else manifest.json's first image). So kube-apiserver.tar carries
# every other image too, re-packed with `repositories` first: kind pulls nothing.

KIND_NODE_IMAGE="localhost/kci/kind-node:$KUBERNETES_VERSION"

IMAGES+=(
  "kind_node|$KIND_NODE_IMAGE|2.5 min|$KIND_CLUSTER_FILES/docker-shim.sh"
)

# Every image the node carries, besides the four of the server tarball: kubeadm's (etcd, coredns,
# pause), kind's sandbox, CNI and storage references, and ours (the NetworkPolicy enforcer and the
# busybox test image) so that `scripts/kind.sh up` loads nothing.
kind_node_extra_images() {
  local c
  for c in etcd coredns pause; do kind_kubeadm_image "$c" || return 1; done
  for c in sandbox kindnetd storage-provisioner storage-helper; do kind_source_image "$c" || return 1; done
  echo "$KIND_NETPOL_IMAGE"
  echo "$KIND_BUSYBOX_IMAGE"
}
# What the node image is made of: every carried image's ID, the base image, the node binaries.
# Recorded after a build; a change in any of them (an image rebuilt by its own entry) rebuilds the node.
kind_node_inputs() {
  local c
  {
    for c in "${KIND_CP_COMPONENTS[@]}" kube-proxy; do kind_kubeadm_image "$c"; done
    kind_node_extra_images
    echo "$KIND_BASE_IMAGE"
  } | sort -u | while read -r ref; do
    echo "$ref $(docker image inspect -f '{{.Id}}' "$ref" 2>/dev/null || echo missing)"
  done
  sha256sum "$KIND_OUT/k8s/kubeadm" "$KIND_OUT/k8s/kubelet" "$BIN/kubectl" | cut -d' ' -f1
}

build_kind_node() {
  local stage="$IMGBUILD/kind-server" shimdir="$IMGBUILD/kind-docker-shim" sbin tarball c ref missing=0
  local -a extras
  "$BIN/kubectl" version --client 2>/dev/null | grep -F "Client Version: $KUBERNETES_VERSION" >/dev/null \
    || { echo "$BIN/kubectl $KUBERNETES_VERSION is missing: run scripts/tools.sh kubectl"; return 1; }
  mapfile -t extras < <(kind_node_extra_images)
  for ref in "${extras[@]}"; do image_exists "$ref" || { echo "missing image $ref"; missing=1; }; done
  [[ $missing == 0 ]] || { echo "build the images above first (scripts/images.sh)"; return 1; }

  echo "== server tarball (layout of kubernetes-server-linux-amd64.tar.gz)"
  rm -rf "$stage"; sbin="$stage/kubernetes/server/bin"; mkdir -p "$sbin"
  echo "$KUBERNETES_VERSION" >"$stage/kubernetes/version"
  install -m 0755 "$KIND_OUT/k8s/kubeadm" "$KIND_OUT/k8s/kubelet" "$BIN/kubectl" "$sbin/"
  for c in kube-controller-manager kube-scheduler kube-proxy; do
    docker save -o "$sbin/$c.tar" "$(kind_kubeadm_image "$c")"
  done
  local pack="$stage/apiserver-archive"
  mkdir -p "$pack"
  docker save "$(kind_kubeadm_image kube-apiserver)" "${extras[@]}" | tar -C "$pack" -x
  [[ -f "$pack/repositories" && -f "$pack/manifest.json" ]] || { echo "docker save wrote no repositories/manifest.json"; return 1; }
  # docker save shortens docker.io references (docker.io/kindest/x -> kindest/x) and kind compares
  # the full reference: write every name fully qualified, as the node's containerd names it anyway
  python3 - "$pack" <<'PY'
import json, os, sys

def full(name):
    first = name.split("/", 1)[0]
    if "/" not in name:
        return "docker.io/library/" + name
    if "." in first or ":" in first or first == "localhost":
        return name
    return "docker.io/" + name

d = sys.argv[1]
with open(os.path.join(d, "repositories")) as f:
    repos = json.load(f)
with open(os.path.join(d, "repositories"), "w") as f:
    json.dump({full(k): v for k, v in repos.items()}, f)
with open(os.path.join(d, "manifest.json")) as f:
    manifest = json.load(f)
for m in manifest:
    m["RepoTags"] = [full(t) for t in m.get("RepoTags") or []]
with open(os.path.join(d, "manifest.json"), "w") as f:
    json.dump(manifest, f)
PY
  # `repositories` first: kind reads the tags of every image in it (see the top of this file)
  (cd "$pack" && find . -mindepth 1 -maxdepth 1 ! -name repositories -printf '%P\n' | LC_ALL=C sort \
    | tar -cf "$sbin/kube-apiserver.tar" repositories -T -)
  rm -rf "$pack"
  # (sed, not head: head's early exit would kill tar with SIGPIPE, a failure under pipefail)
  [[ "$(tar -tf "$sbin/kube-apiserver.tar" | sed -n 1p)" == repositories ]] \
    || { echo "kube-apiserver.tar does not start with repositories"; return 1; }
  tarball="$stage/kubernetes-server-linux-amd64.tar.gz"
  tar -C "$stage" -cf - kubernetes | gzip -1 >"$tarball"
  rm -rf "$stage/kubernetes"
  ls -l "$tarball"

  echo "== kind build node-image (docker shim on kind's PATH: no --privileged, no registry)"
  rm -rf "$shimdir"; mkdir -p "$shimdir"
  ln -s "$ROOT/$KIND_CLUSTER_FILES/docker-shim.sh" "$shimdir/docker"
  KCI_REAL_DOCKER="$(command -v docker)" PATH="$shimdir:$PATH" \
    "$BIN/kind" build node-image --type file "$tarball" --base-image "$KIND_BASE_IMAGE" \
      --image "$KIND_NODE_IMAGE" --arch amd64 -v 1
  rm -rf "$stage" "$shimdir"
  kind_node_inputs >"$KIND_OUT/node-image.inputs"
  docker image inspect -f '{{.Id}}' "$KIND_NODE_IMAGE" >"$KIND_OUT/node-image.id"
  docker image inspect -f '{{.Id}} {{.Size}} bytes' "$KIND_NODE_IMAGE"
}
check_kind_node() {
  image_exists "$KIND_NODE_IMAGE" || return 1
  # built from exactly the images and binaries there are now
  [[ -f "$KIND_OUT/node-image.id" && "$(docker image inspect -f '{{.Id}}' "$KIND_NODE_IMAGE")" == "$(cat "$KIND_OUT/node-image.id")" ]] || return 1
  [[ -f "$KIND_OUT/node-image.inputs" ]] && diff -q <(kind_node_inputs) "$KIND_OUT/node-image.inputs" >/dev/null || return 1
  docker run --rm --entrypoint /bin/sh "$KIND_NODE_IMAGE" -ec "
    test \"\$(cat /kind/version)\" = '$KUBERNETES_VERSION'
    kubelet --version | grep -xF 'Kubernetes $KUBERNETES_VERSION'
    kubeadm version -o short | grep -xF '$KUBERNETES_VERSION'
    containerd --version | grep -F ' $CONTAINERD_VERSION '
    test -f /kind/manifests/default-storage.yaml"
}
