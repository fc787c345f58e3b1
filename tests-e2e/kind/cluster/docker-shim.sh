#!/usr/bin/env bash
# `docker` as kind sees it in offline mode: scripts/kind.sh and scripts/images/42-kind-node.sh put a
# directory holding a `docker` link to this file first on kind's PATH (never on anyone else's).
# Everything is passed to the real docker client (KCI_REAL_DOCKER) unchanged, except:
#
# 1. `--privileged` (kind adds it to `docker run` for node containers and to every `docker exec`):
#    runc fails with "unable to apply caps: operation not permitted" because our Docker daemon's
#    capability bounding set lacks CAP_SYS_RESOURCE (`--cap-add ALL` fails the same way). On `run` it
#    becomes every capability but that one, unmasked /proc and /sys paths, access to all devices
#    through the device cgroup, and /dev/kmsg (kubelet reads it); on `exec` it is dropped (an exec
#    gets the container's capabilities anyway). The node's entrypoint (tests-e2e/kind/cluster/
#    node-entrypoint.sh) makes the cgroup v1 mounts writable, the other thing `--privileged` did.
# 2. `--volume /lib/modules:/lib/modules:ro` when the host has no /lib/modules (a kernel without
#    loadable modules): Docker would create an empty /lib/modules on the host; an empty directory
#    of ours (KCI_EMPTY_LIB_MODULES) is mounted instead.
# 3. Every `docker run` gets `--dns 127.0.0.1` unless it names its own: no DNS query leaves the
#    machine. On kind's network a container asks Docker's embedded DNS, which forwards names it does
#    not know to the run's --dns servers (default: the host's resolv.conf, a resolver outside this
#    machine); a loopback server is asked from the host's namespace, where nothing answers on :53,
#    so such names fail at once. The cluster's own names (CoreDNS, the node names) are unaffected.
# 4. `docker pull` of an image that is already in our daemon succeeds without asking a registry,
#    and of any other image fails at once with a clear message: nothing here can reach a registry,
#    and kind would otherwise retry for seconds (it pulls the base image before every node build).
set -euo pipefail
real=${KCI_REAL_DOCKER:?KCI_REAL_DOCKER must name the real docker client}

if [[ $# -eq 0 ]]; then exec "$real"; fi

sub=$1
shift
case "$sub" in
  run)
    out=()
    case " $* " in *" --dns "* | *" --dns="*) ;; *) out+=(--dns 127.0.0.1) ;; esac
    while [[ $# -gt 0 ]]; do
      case "$1" in
        --privileged)
          out+=(--cap-add ALL --cap-drop SYS_RESOURCE --security-opt systempaths=unconfined
                --device-cgroup-rule 'a *:* rwm' --device /dev/kmsg)
          ;;
        --volume | -v)
          if [[ ${2:-} == /lib/modules:/lib/modules:ro && ! -d /lib/modules ]]; then
            out+=("$1" "${KCI_EMPTY_LIB_MODULES:?KCI_EMPTY_LIB_MODULES must name an empty directory}:/lib/modules:ro")
          else
            out+=("$1" "${2:-}")
          fi
          shift
          ;;
        *) out+=("$1") ;;
      esac
      shift
    done
    exec "$real" run "${out[@]}"
    ;;
  exec)
    # kind always puts --privileged right after `exec`, before the container name and its command
    if [[ ${1:-} == --privileged ]]; then shift; fi
    exec "$real" exec "$@"
    ;;
  pull)
    ref=""
    for a in "$@"; do [[ $a == -* ]] || ref=$a; done
    if [[ -n $ref ]] && "$real" image inspect "$ref" >/dev/null 2>&1; then
      exit 0
    fi
    echo "kci docker shim: offline: image '$ref' is not in our Docker Engine and no registry is reachable (build it with scripts/images.sh)" >&2
    exit 1
    ;;
  *)
    exec "$real" "$sub" "$@"
    ;;
esac
