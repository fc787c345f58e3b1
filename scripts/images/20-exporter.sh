# shellcheck shell=bash
# The exporter image from exporter/Dockerfile, unchanged, with PYTHON_IMAGE pointed at our Debian
# Python base; and the Prometheus 3 and Thanos images from the binaries `make tools` builds.
# Sourced by scripts/images.sh.
#
# No index is reachable from inside a build here, so the build stage runs on a throw-away image:
# the Python base plus a wheelhouse made on this machine with pip (the exporter's runtime deps and
# its build backend), with PIP_NO_INDEX/PIP_FIND_LINKS set (the Dockerfile's BUILD_IMAGE argument).
# The final stage is the plain Python base: the wheelhouse never reaches the image.

_exporter_version() { sed -n 's/^__version__ = "\(.*\)"/\1/p' exporter/src/kubecost_allocation_exporter/__init__.py; }

IMAGES+=(
  "exporter|$(_exporter_version)|1 min|.dockerignore exporter/Dockerfile exporter/pyproject.toml exporter/README.md exporter/src queries/pyproject.toml queries/README.md queries/src"
  "prometheus|$PROMETHEUS3_VERSION|<1 min|$BIN/prometheus $BIN/promtool"
  "thanos|$THANOS_VERSION|<1 min|$BIN/thanos"
)

EXPORTER_IMAGE="localhost/kubecost-allocation-exporter:$(_exporter_version)"
PROMETHEUS_IMAGE="localhost/kci/prometheus:$PROMETHEUS3_VERSION"
THANOS_IMAGE="localhost/kci/thanos:$THANOS_VERSION"

build_exporter() {
  local ctx="$IMGBUILD/exporter-build" py reqs
  image_exists "$PYTHON_BASE_IMAGE" || { echo "$PYTHON_BASE_IMAGE missing: scripts/images.sh python"; return 1; }
  rm -rf "$ctx"; mkdir -p "$ctx/wheels"
  # The base's Python (Debian bookworm 3.11) and this machine's pip pick the same wheels (cp311, manylinux).
  py=$(docker run --rm "$PYTHON_BASE_IMAGE" python -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  echo "wheelhouse for Python $py"
  # The runtime deps and build backends of the exporter and the query library, read from their pyproject.toml
  # (not `pip download ./exporter`, which would build metadata inside the checkout); the Dockerfile builds both
  # from source, so the query library itself (on no index) is left out.
  mapfile -t reqs < <(python3 -c 'import tomllib
deps = set()
for d in ("queries", "exporter"):
    p = tomllib.load(open(f"{d}/pyproject.toml", "rb"))
    deps.update(p["project"]["dependencies"] + p["build-system"]["requires"])
print("\n".join(sorted(r for r in deps if not r.startswith("cloudtuner-kubecost-queries"))))')
  python3 -m pip download --quiet --dest "$ctx/wheels" --only-binary=:all: --python-version "$py" \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    "${reqs[@]}"
  ls "$ctx/wheels"
  cat >"$ctx/Dockerfile" <<EOF
FROM $PYTHON_BASE_IMAGE
COPY wheels /wheels
ENV PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheels
EOF
  docker build --quiet --tag localhost/kci/python-wheelhouse:build "$ctx"
  docker build --tag "$EXPORTER_IMAGE" \
    --build-arg "PYTHON_IMAGE=$PYTHON_BASE_IMAGE" --build-arg BUILD_IMAGE=localhost/kci/python-wheelhouse:build \
    --file exporter/Dockerfile .
  docker image rm localhost/kci/python-wheelhouse:build >/dev/null
  rm -rf "$ctx"
  docker image ls "$EXPORTER_IMAGE" --format 'size {{.Size}}'
}
check_exporter() {
  # As the image runs in the chart: uid 65532, read-only root, no capabilities
  docker run --rm --read-only --cap-drop ALL "$EXPORTER_IMAGE" --version | grep -F "$(_exporter_version)" &&
    [[ "$(docker image inspect "$EXPORTER_IMAGE" --format '{{.Config.User}}')" == 65532:65532 ]]
}

# Prometheus and Thanos as their upstream images lay them out: binary in /bin, nobody, data in /prometheus.
_binary_image() { # ref entrypoint workdir files...
  local ref=$1 entry=$2 workdir=$3 ctx f; shift 3
  ctx="$IMGBUILD/$(basename "${ref%%:*}")-build"
  rm -rf "$ctx"; mkdir -p "$ctx"
  for f in "$@"; do install -m 0755 "$f" "$ctx/"; done
  {
    echo "FROM $DEBIAN_IMAGE"
    for f in "$@"; do echo "COPY $(basename "$f") /bin/$(basename "$f")"; done
    echo "RUN mkdir -p $workdir && chown 65534:65534 $workdir"
    echo "USER 65534:65534"
    echo "WORKDIR $workdir"
    echo "ENTRYPOINT [\"/bin/$entry\"]"
  } >"$ctx/Dockerfile"
  docker build --tag "$ref" "$ctx"
  rm -rf "$ctx"
}

build_prometheus() {
  [[ -x $BIN/prometheus ]] || { echo "$BIN/prometheus missing: make tools"; return 1; }
  _binary_image "$PROMETHEUS_IMAGE" prometheus /prometheus "$BIN/prometheus" "$BIN/promtool"
}
check_prometheus() {
  docker run --rm "$PROMETHEUS_IMAGE" --version 2>&1 | grep -F "version ${PROMETHEUS3_VERSION#v} "
}

build_thanos() {
  [[ -x $BIN/thanos ]] || { echo "$BIN/thanos missing: make tools"; return 1; }
  _binary_image "$THANOS_IMAGE" thanos /data "$BIN/thanos"
}
check_thanos() {
  docker run --rm "$THANOS_IMAGE" --version 2>&1 | grep -F "version ${THANOS_VERSION#v} "
}
