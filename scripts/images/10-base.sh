# shellcheck shell=bash
# Base images, sourced by scripts/images.sh: Debian bookworm root filesystems made by mmdebstrap from
# the machine's Debian mirror. Everything else is built FROM these, so no image comes from a registry.
#
# localhost/kci/debian:bookworm        minbase + ca-certificates + tzdata; user nonroot (65532) and
#                                      nobody (65534) as in distroless/upstream images
# localhost/kci/python:3.11-bookworm   the same + Debian's python3.11 and venv support: the exporter
#                                      Dockerfile's PYTHON_IMAGE here (the public default stays python:3.11-slim)

IMAGES+=(
  "debian|bookworm|1 min|"
  "python|3.11-bookworm|1.5 min|"
)

DEBIAN_IMAGE=localhost/kci/debian:bookworm
PYTHON_BASE_IMAGE=localhost/kci/python:3.11-bookworm

# Users every image here shares: nonroot as distroless and our exporter use, and Debian's nobody.
_base_users() {
  local root=$1
  grep -q '^nonroot:' "$root/etc/passwd" || {
    echo 'nonroot:x:65532:65532:nonroot:/home/nonroot:/usr/sbin/nologin' >>"$root/etc/passwd"
    echo 'nonroot:x:65532:' >>"$root/etc/group"
    mkdir -p "$root/home/nonroot" && chown 65532:65532 "$root/home/nonroot"
  }
  # Unused caches of the bootstrap: apt lists are re-fetched by whoever needs them
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/log/*.log
}

build_debian() {
  local root="$IMGBUILD/debian-rootfs"
  debian_rootfs "$root" minbase ca-certificates tzdata
  _base_users "$root"
  import_rootfs "$root" "$DEBIAN_IMAGE" --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]'
  rm -rf "$root"
}
check_debian() {
  docker run --rm --user 65532 "$DEBIAN_IMAGE" sh -c 'id -u && test -s /etc/ssl/certs/ca-certificates.crt' | grep -x 65532
}

build_python() {
  local root="$IMGBUILD/python-rootfs"
  # python3-venv brings ensurepip's wheels (pip, setuptools); python-is-python3 gives `python`, which
  # the exporter Dockerfile calls like the official image has it.
  debian_rootfs "$root" minbase ca-certificates tzdata python3 python3-venv python-is-python3
  _base_users "$root"
  import_rootfs "$root" "$PYTHON_BASE_IMAGE" \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]'
  rm -rf "$root"
}
check_python() {
  docker run --rm "$PYTHON_BASE_IMAGE" python -c 'import sys, venv, ensurepip; print(sys.version)' | grep '^3\.11\.'
}
