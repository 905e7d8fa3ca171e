#!/usr/bin/env bash
# Verified reads: what checking every node's bytes against its id costs. Two builds read the
# same universe (one import of bench/import.sh's 1 GiB file) in the same run, alternating:
#   - cold `jit cat HEAD:file.bin > /dev/null` (page cache dropped before each run)
#   - the same warm (nothing to read from disk: what hashing alone costs)
#   - the mount's cold sequential read: a fresh `jit up` per run, caches dropped, then
#     `dd` of the file through head/ (the first open copies it out of LMDB, chunk by chunk)
# Prints a Markdown table. Needs root (it drops the page cache) and bench/import.sh's data.
#
#   bench/verify.sh BEFORE_JIT AFTER_JIT [RUNS]     (default 5 runs each)
set -euo pipefail

before=$1
after=$2
runs=${3:-5}
here=$(cd "$(dirname "$0")/.." && pwd)
JIT_BIN=$after . "$here/bench/common.sh"
big="$data/onegig/file.bin"
[ -f "$big" ] || { echo "run bench/import.sh first (it prepares $big)" >&2; exit 1; }
export JIT_AUTHOR="bench <b@x>" JIT_DATE="@1700000000"

work=$(mktemp -d "$data/verify-bench.XXXX")
daemon=
cleanup() {
  [ -n "$daemon" ] && kill "$daemon" 2>/dev/null || true
  wait 2>/dev/null || true
  umount -l "$work/mnt" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
now() { date +%s.%N; }

"$before" init "$work/u" >/dev/null
"$before" -C "$work/u" import "$(dirname "$big")" -m bench -q >/dev/null

cat_once() { # binary [warm] → seconds for a cold (or warm) cat of the whole file
  [ "${2:-}" = warm ] || drop
  local t0; t0=$(now)
  "$1" -C "$work/u" cat HEAD:file.bin > /dev/null
  python3 -c "print('%.4f' % ($(now) - $t0))"
}

mount_once() { # binary → seconds for a cold sequential read through a fresh mount
  "$1" -C "$work/u" up --no-plane --mount "$work/mnt" > "$work/up.log" 2>&1 &
  daemon=$!
  for _ in $(seq 300); do grep -q socket: "$work/up.log" 2>/dev/null && break; sleep 0.1; done
  drop
  local t0; t0=$(now)
  dd if="$work/mnt/head/file.bin" of=/dev/null bs=1M status=none
  local t; t=$(python3 -c "print('%.4f' % ($(now) - $t0))")
  kill "$daemon"; wait "$daemon" 2>/dev/null || true; daemon=
  for _ in $(seq 100); do mountpoint -q "$work/mnt" || break; sleep 0.1; done
  echo "$t"
}

declare -A times
for run in $(seq "$runs"); do
  for side in before after; do
    bin=${!side}
    times[cat_$side]+="$(cat_once "$bin") "
    times[warm_$side]+="$(cat_once "$bin" warm) "
    times[mount_$side]+="$(mount_once "$bin") "
  done
done

stat_of() { tr ' ' '\n' <<<"${times[$1]}" | grep -v '^$' | median; }
range_of() { tr ' ' '\n' <<<"${times[$1]}" | grep -v '^$' | minmax; }
row() { # label key
  local b a; b=$(stat_of "$2_before"); a=$(stat_of "$2_after")
  echo "| $1 | $b s ($(range_of "$2_before")) | $a s ($(range_of "$2_after")) | $(python3 -c "print('%.2f' % ($a / $b))")× |"
}

cat <<MD
| Workload (1 GiB file) | before | after (verified) | after / before |
|---|---|---|---|
$(row "jit cat HEAD:file.bin > /dev/null, cold" cat)
$(row "sequential read through a fresh mount (dd, bs=1M), cold" mount)
$(row "jit cat, warm (the file in the page cache: hashing alone)" warm)

Median of $runs runs each (min–max), the two builds alternating on one universe.
MD
