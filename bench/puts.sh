#!/usr/bin/env bash
# One patch of N puts into one directory (issue #17 item 3): peak RSS and wall time of
# `jit sws apply` and of the `jit commit` that follows, for N = 1k, 10k, 100k, two builds in the
# same run. No daemon: both run in the `jit` process, so its peak RSS is the whole cost.
# Each run starts from a fresh universe. A run that exceeds the memory cap (a cgroup v2 with
# memory.max, when the machine has one; LMDB's large map rules out ulimit -v) or the time cap is
# reported as such (the quadratic build needs ~11.5 GB for 10k puts).
# Prints a Markdown table.
#
#   bench/puts.sh BEFORE_JIT AFTER_JIT [SIZES]     (default "1000 10000 100000")
#
# BEFORE_MAX (default 10000) is the largest N the before build is given: a quadratic build
# would need about a terabyte for 100k puts.
set -euo pipefail

before=$1
after=$2
sizes=${3:-"1000 10000 100000"}
before_max=${BEFORE_MAX:-10000}
here=$(cd "$(dirname "$0")/.." && pwd)
JIT_BIN=$after . "$here/bench/common.sh"
export JIT_AUTHOR="bench <b@x>" JIT_DATE="@1700000000"
mem_cap=16G
time_cap=300

work=$(mktemp -d "$data/puts-bench.XXXX")
cgroup=
if [ -f /sys/fs/cgroup/cgroup.controllers ] && grep -qw memory /sys/fs/cgroup/cgroup.subtree_control; then
  cgroup=/sys/fs/cgroup/jit-puts-bench.$$
  mkdir "$cgroup" && echo "$mem_cap" > "$cgroup/memory.max" && echo 0 > "$cgroup/memory.swap.max" 2>/dev/null || true
fi
cleanup() {
  rm -rf "$work"
  [ -z "$cgroup" ] || rmdir "$cgroup" 2>/dev/null || true
}
trap cleanup EXIT
capped() { # command… run inside the memory cgroup (when there is one)
  if [ -n "$cgroup" ]; then
    sh -c 'echo $$ > "$0/cgroup.procs" && shift && exec "$@"' "$cgroup" sh "$@"
  else
    "$@"
  fi
}

patch_of() { # N → a JSON patch of N puts into dir/
  python3 - "$1" <<'PY'
import json, sys
n = int(sys.argv[1])
ops = [{"op": "put", "path": f"dir/f{i:07}.txt", "content": f"file {i}\n"} for i in range(n)]
print(json.dumps({"id": f"puts-{n}", "author": "bench", "ops": ops}))
PY
}

measure() { # command… → "seconds peak_MiB" or "—" when capped
  local out status
  out=$(capped /usr/bin/time -f "%e %M" timeout $time_cap "$@" 2>&1 >/dev/null | tail -1) && status=0 || status=$?
  if [ $status -ne 0 ]; then echo "failed"; else echo "$out" | awk '{printf "%.2f s, %.0f MiB", $1, $2/1024}'; fi
}

echo "| puts into one directory | build | sws apply (time, peak RSS) | commit (time, peak RSS) |"
echo "|---|---|---|---|"
for n in $sizes; do
  patch_of "$n" > "$work/patch.json"
  for side in before after; do
    bin=${!side}
    if [ "$side" = before ] && [ "$n" -gt "$before_max" ]; then
      echo "| $n | $side | not run (above BEFORE_MAX=$before_max) | — |"
      continue
    fi
    u="$work/u-$side-$n"
    "$bin" init "$u" >/dev/null
    id=$("$bin" -C "$u" --json status | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
    apply=$(measure "$bin" -C "$u" sws apply "$id" "$work/patch.json")
    if [ "$apply" = failed ]; then
      commit="—"
      apply="did not finish (cap: $mem_cap, ${time_cap} s)"
    else
      commit=$(measure "$bin" -C "$u" commit -m "puts $n")
    fi
    echo "| $n | $side | $apply | $commit |"
    rm -rf "$u"
  done
done
