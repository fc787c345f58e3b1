#!/bin/bash
# Entrypoint of the offline kind node image (installed as /usr/local/bin/entrypoint by
# scripts/images/40-kind.sh; kind's own entrypoint is kept unchanged as /usr/local/bin/kind-entrypoint
# and runs right after this). kind commits the node image with ENTRYPOINT
# ["/usr/local/bin/entrypoint", "/sbin/init"], so this file must keep that name.
#
# Why: the offline node container runs without `--privileged` (the Docker daemon here lacks
# CAP_SYS_RESOURCE, so `--privileged` and `--cap-add ALL` fail in runc; the docker shim used by
# scripts/kind.sh swaps `--privileged` for every other capability). Without `--privileged`, Docker
# mounts the cgroup v1 hierarchies (and the tmpfs holding them) read-only, and systemd, kind's
# entrypoint (which creates the /kubelet cgroup roots), containerd and kubelet all need to write
# there. The mounts belong to this container's own cgroup namespace (`--cgroupns=private`), so
# making them writable gives the node what `--privileged` would have given it, nothing more.
# On cgroup v2 hosts, or when they are already writable, this does nothing.
set -o errexit -o nounset -o pipefail

log() { echo "INFO: kci: $*" >&2; }

if [[ ! -f /sys/fs/cgroup/cgroup.controllers ]]; then
  # cgroup v1: the tmpfs at /sys/fs/cgroup first, then every hierarchy mounted below it
  while read -r target opts; do
    case ",$opts," in
      *,ro,*)
        if [[ $target == /sys/fs/cgroup ]]; then
          mount -o remount,rw "$target"
        else
          mount -o remount,bind,rw "$target"
        fi
        log "remounted $target read-write"
        ;;
    esac
  done < <(findmnt -rn -o TARGET,OPTIONS | awk '$1 == "/sys/fs/cgroup" || $1 ~ "^/sys/fs/cgroup/" {print $1, $2}')
fi

exec /usr/local/bin/kind-entrypoint "$@"
