#!/usr/bin/env bash
# Build every container image the real-cluster layer needs, offline, into our own Docker Engine
# (scripts/docker.sh). Called by `make images`.
#
# No image registry is reachable here: each image is made from a Debian root filesystem
# (mmdebstrap, Debian's package mirror) and binaries built from the Go module proxy or wheels from
# PyPI. The builders live in scripts/images/<name>.sh (one file per image family), each defining
# build_<name> and check_<name>; this driver gives them what tools.sh gives the tools:
# - a stamp per image in $KCI_CACHE/stamps/image-<name>: hash of its version, its builder file and
#   the files it builds from; a matching stamp and a passing check mean "ok (cached)";
# - a log per image in $KCI_CACHE/logs/images/<name>.log, its wall time in timings.tsv;
# - one progress line before and after each build, with the expected time.
#
# Usage: scripts/images.sh [name ...]    (default: all, in order; `scripts/images.sh --list`)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
: "${KCI_CACHE:=$HOME/.cache/kubecost-integration}"
export KCI_CACHE
# shellcheck source=../tools/versions.env
source tools/versions.env

BIN="$KCI_CACHE/bin"
STAMPS="$KCI_CACHE/stamps"
LOGS="$KCI_CACHE/logs/images"
# Scratch space for root filesystems and build contexts (kept between runs: a failed build can be read)
IMGBUILD="$KCI_CACHE/build/images"
mkdir -p "$BIN" "$STAMPS" "$LOGS" "$IMGBUILD"
export PATH="$BIN:${KCI_VENV:-$KCI_CACHE/venv}/bin:$PATH"
export DOCKER_HOST="unix://$KCI_CACHE/docker/docker.sock"
# The legacy builder: BuildKit resolves the `# syntax=` frontend image from a registry.
export DOCKER_BUILDKIT=0
export GOTOOLCHAIN=local
export GOFLAGS="${GOFLAGS:-} -p=2 -buildvcs=false"

die() { echo "==> images: ERROR: $*" >&2; exit 1; }

# shellcheck source=lib/stamped.sh
source scripts/lib/stamped.sh
hold_lock images "$KCI_CACHE/.images.lock"

# ---------------------------------------------------------------- helpers for the builders

# image_exists ref : the image is in our daemon
image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

# debian_rootfs dir variant packages... : a Debian bookworm root filesystem as a directory tree,
# from the machine's configured mirror (mmdebstrap; no container needed).
debian_rootfs() {
  local dir=$1 variant=$2; shift 2
  local pkgs; pkgs=$(IFS=,; echo "$*")
  command -v mmdebstrap >/dev/null || die "mmdebstrap missing (make images installs it with apt-get)"
  rm -rf "$dir"
  mmdebstrap --variant="$variant" ${pkgs:+--include="$pkgs"} \
    --aptopt='APT::Install-Recommends "false"' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*' \
    bookworm "$dir" "$(debian_mirror)"
}
# The mirror apt uses on this machine (deb822 sources or a sources.list), so mmdebstrap goes where apt goes.
debian_mirror() {
  local uri
  uri=$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -v security | head -n1 || true)
  [[ -n "$uri" ]] || uri=$(grep -hE '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}' | head -n1 || true)
  echo "${uri:-http://deb.debian.org/debian}"
}
# import_rootfs dir ref [docker-import --change ...] : a directory tree as a one-layer image
import_rootfs() {
  local dir=$1 ref=$2; shift 2
  tar -C "$dir" -c . | docker import "$@" - "$ref" >/dev/null
}

# ---------------------------------------------------------------- builders

for f in scripts/images/*.sh; do
  # shellcheck source=/dev/null
  source "$f"
done

# name | version | eta | stamp inputs (files/dirs hashed into the stamp, besides the builder file)
# Builders declare their list entries in IMAGES+=(...) in their own file, in dependency order.
[[ ${#IMAGES[@]} -gt 0 ]] || die "no image builders found in scripts/images/"

ensure_prereqs() {
  if ! command -v mmdebstrap >/dev/null; then
    [[ $(id -u) == 0 ]] || die "mmdebstrap is missing and installing it needs root: apt-get install mmdebstrap"
    echo "==> images: installing mmdebstrap (apt-get)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        mmdebstrap; } >"$LOGS/apt.log" 2>&1 || die "apt-get install mmdebstrap failed: see $LOGS/apt.log"
  fi
  scripts/docker.sh up
}

hash_inputs() { # files/dirs... -> content hash (sorted paths, contents)
  local p
  for p in "$@"; do
    if [[ -d $p ]]; then find "$p" -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum
    elif [[ -e $p ]]; then sha256sum "$p"
    else echo "missing $p"; fi
  done
}

ensure() { # one IMAGES entry
  local name ver eta inputs want file
  IFS='|' read -r name ver eta inputs <<<"$1"
  file=$(grep -l "^build_$name()" scripts/images/*.sh | head -n1)
  # shellcheck disable=SC2086
  want=$( { echo "$ver"; cat "$file"; hash_inputs $inputs; } | sha256sum | cut -d' ' -f1)
  if stamp_ok "$STAMPS/image-$name" "$want" "check_$name"; then
    echo "==> images: $name $ver ok (cached)"
    return 0
  fi
  build_stamped images "$name" "$ver" "$eta" "$want" "$STAMPS/image-$name" "$LOGS/$name.log" "$LOGS/timings.tsv" \
    "build_$name" "check_$name"
}

if [[ ${1:-} == --list ]]; then
  for t in "${IMAGES[@]}"; do IFS='|' read -r n v _ _ <<<"$t"; echo "$n $v"; done
  exit 0
fi

wanted=("$@")
for w in "${wanted[@]}"; do
  printf '%s\n' "${IMAGES[@]}" | cut -d'|' -f1 | grep -xF "$w" >/dev/null \
    || die "unknown image '$w' (scripts/images.sh --list names them)"
done
total_start=$SECONDS
ensure_prereqs
for t in "${IMAGES[@]}"; do
  n=${t%%|*}
  if [[ ${#wanted[@]} -gt 0 ]]; then
    printf '%s\n' "${wanted[@]}" | grep -xF "$n" >/dev/null || continue
  fi
  ensure "$t"
done
echo "==> images: all present in our Docker Engine ($DOCKER_HOST, $((SECONDS - total_start))s)"
