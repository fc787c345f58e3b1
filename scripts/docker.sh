#!/usr/bin/env bash
# Our own Docker Engine for the image builds and the kind cluster: its own data-root, exec-root,
# pidfile and socket under $KCI_CACHE, so it never touches (or is touched by) another daemon on
# the machine. Every other script reaches it through DOCKER_HOST=unix://$KCI_CACHE/docker/docker.sock.
#
#   scripts/docker.sh up      start it unless ours is already running (idempotent); prints DOCKER_HOST
#   scripts/docker.sh down    stop ours (by its pidfile) and nothing else
#   scripts/docker.sh status  exit 0 when ours answers
#   scripts/docker.sh env     print `export DOCKER_HOST=...` for a shell
#
# Needs Debian's docker.io (dockerd + containerd + runc): installed with apt-get when missing.
set -euo pipefail
: "${KCI_CACHE:=$HOME/.cache/kubecost-integration}"
DIR="$KCI_CACHE/docker"
SOCK="$DIR/docker.sock"
PIDFILE="$DIR/dockerd.pid"
LOG="$DIR/dockerd.log"
# exec-root holds containerd's shim sockets: unix socket paths are limited to 108 bytes, so it
# lives under /run with a name derived from the cache path (one per cache, never a shared one).
EXEC_ROOT="/run/kci-docker-$(printf '%s' "$KCI_CACHE" | sha256sum | cut -c1-8)"
# A bridge and address pool of our own, so a second daemon on the machine never collides with ours.
BRIDGE_POOL="${KCI_DOCKER_POOL:-10.213.0.0/16}"
export DOCKER_HOST="unix://$SOCK"

die() { echo "==> docker: ERROR: $*" >&2; exit 1; }

ours_running() {
  [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null && docker version >/dev/null 2>&1
}

install_engine() {
  command -v dockerd >/dev/null && command -v docker >/dev/null && return 0
  [[ $(id -u) == 0 ]] || die "dockerd is not installed and installing it needs root: apt-get install docker.io"
  echo "==> docker: installing Debian's docker.io (apt-get; about 1 min)"
  # The package's maintainer scripts would start the system daemon: a temporary policy-rc.d forbids it.
  local policy=/usr/sbin/policy-rc.d own=0
  if [[ ! -e $policy ]]; then printf '#!/bin/sh\nexit 101\n' >$policy && chmod +x $policy && own=1; fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    docker.io >"$DIR/apt.log" 2>&1 || { [[ $own == 1 ]] && rm -f $policy; die "apt-get install docker.io failed: see $DIR/apt.log"; }
  [[ $own == 1 ]] && rm -f $policy
  return 0
}

up() {
  mkdir -p "$DIR"
  if ours_running; then echo "==> docker: ours is running (DOCKER_HOST=$DOCKER_HOST)"; return 0; fi
  install_engine
  [[ $(id -u) == 0 ]] || die "dockerd needs root here"
  rm -f "$SOCK" "$PIDFILE"
  echo "==> docker: starting dockerd (data-root $DIR/data, socket $SOCK, log $LOG)"
  # cgroupfs because the machine runs no systemd; kind publishes the API server on 127.0.0.1 only.
  # The daemon must not inherit the caller's descriptors: a lock fd held open by dockerd (scripts/images.sh
  # starts it while holding its lock) would block every later run for as long as the daemon lives.
  close_fds() { local fd; for fd in /proc/"$BASHPID"/fd/*; do fd=${fd##*/}; ((fd > 2)) && eval "exec $fd>&-"; done; }
  ( close_fds 2>/dev/null; exec setsid dockerd \
    --data-root "$DIR/data" --exec-root "$EXEC_ROOT" --pidfile "$PIDFILE" -H "unix://$SOCK" \
    --default-address-pool "base=$BRIDGE_POOL,size=24" --bip "${BRIDGE_POOL%.0.0/16}.255.1/24" \
    --storage-driver overlay2 --exec-opt native.cgroupdriver=cgroupfs \
    --log-level warn >"$LOG" 2>&1 </dev/null ) &
  local i
  for i in $(seq 1 60); do
    if docker version >/dev/null 2>&1; then
      echo "==> docker: ready after ${i}s; export DOCKER_HOST=$DOCKER_HOST"
      return 0
    fi
    sleep 1
  done
  tail -n 30 "$LOG" >&2 || true
  die "dockerd did not answer on $SOCK within 60 s (log above: $LOG)"
}

down() {
  [[ -f "$PIDFILE" ]] || { echo "==> docker: ours is not running"; return 0; }
  local pid i
  pid=$(cat "$PIDFILE")
  if kill -0 "$pid" 2>/dev/null; then
    echo "==> docker: stopping ours (pid $pid)"
    kill "$pid"
    for i in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -0 "$pid" 2>/dev/null && { echo "==> docker: still running after 30 s, killing"; kill -9 "$pid"; }
  fi
  rm -f "$PIDFILE" "$SOCK"
  echo "==> docker: stopped"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) ours_running ;;
  env) echo "export DOCKER_HOST=$DOCKER_HOST" ;;
  *) echo "usage: scripts/docker.sh up|down|status|env" >&2; exit 2 ;;
esac
