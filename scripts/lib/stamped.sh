# shellcheck shell=bash
# What scripts/tools.sh and scripts/images.sh share: one run at a time per cache, and the build routine
# behind their stamps (cached check, build into a log, check, timing line, stamp). Each caller computes its
# own stamp content (the tools hash their builder functions, the images their builder file and inputs).
# Needs `die` from the caller.

# hold_lock TAG FILE : wait for (and keep until exit) the lock of FILE, saying so when another run holds it
hold_lock() {
  local tag=$1 file=$2 fd
  exec {fd}>"$file"
  if ! flock -n "$fd"; then
    echo "==> $tag: another run holds $file; waiting for it"
    flock "$fd"
  fi
}

# stamp_ok STAMP WANT CHECK : the stamp file holds WANT and the check function passes
stamp_ok() { [[ -f "$1" && "$(cat "$1")" == "$2" ]] && ( "$3" ) >/dev/null 2>&1; }

# build_stamped TAG LABEL VERSION ETA WANT STAMP LOG TIMINGS BUILD CHECK [AFTER]
#   runs BUILD into LOG (progress line before and after), then AFTER (if given), then CHECK; on success
#   appends the wall time to TIMINGS and writes WANT to STAMP; on failure dies with the log's last lines.
build_stamped() {
  local tag=$1 label=$2 ver=$3 eta=$4 want=$5 stamp=$6 log=$7 timings=$8 build=$9 check=${10} after=${11:-}
  local start=$SECONDS rc=0 secs
  echo "==> $tag: $label $ver (building, ~$eta; log: $log)"
  # not `if ! ( ... )`: bash ignores set -e inside a subshell that is part of a condition
  set +e
  ( set -euo pipefail; "$build" ) >"$log" 2>&1
  rc=$?
  set -e
  if [[ $rc -ne 0 ]]; then
    echo "---- last lines of $log:" >&2; tail -n 25 "$log" >&2
    die "could not build/install $label $ver — see $log"
  fi
  [[ -z $after ]] || "$after"
  if ! ( "$check" ) >>"$log" 2>&1; then
    echo "---- last lines of $log:" >&2; tail -n 15 "$log" >&2
    die "$label $ver was built but its check failed — see $log"
  fi
  secs=$((SECONDS - start))
  printf '%s\t%s\t%s\t%ss\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$label" "$ver" "$secs" >>"$timings"
  echo "$want" >"$stamp"
  echo "==> $tag: $label $ver done in ${secs}s"
}
