#!/usr/bin/env bash
# Mount benchmark: the jitfs mount against the native file system (ext4) in the same run.
#   - sequential read of a 1 GiB file, cold (caches dropped) and warm
#   - `find` + `stat` over the Linux 6.1 tree (78k files), cold and warm
#   - building a real project (the jit-kernel crate, offline) inside an SWS vs on native disk
#   - the daemon's request rate (cold stat walk) and its memory with the Linux tree walked
# Prints a Markdown section. Needs root (it drops the page cache), hyperfine, a release build
# and bench/import.sh's data.
#
#   bench/mount.sh [RUNS]     (default 5 timed runs per read/walk, 2 per build)
set -euo pipefail

runs=${1:-5}
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/bench/common.sh"
big="$data/onegig/file.bin"
command -v hyperfine >/dev/null || apt-get install -y -qq hyperfine >/dev/null
[ -d "$linux" ] && [ -f "$big" ] || { echo "run bench/import.sh first (it prepares $data)" >&2; exit 1; }
export JIT_AUTHOR="bench <b@x>" JIT_DATE="@1700000000"

work=$(mktemp -d "$data/mount-bench.XXXX")
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for m in "$work"/*/mnt; do umount -l "$m" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
drop='sync; echo 3 > /proc/sys/vm/drop_caches'

start() { # universe dir, tree → a daemon mounting the tree's import at $1/mnt
  "$jit" init "$1" >/dev/null
  "$jit" -C "$1" import "$2" -m bench -q >/dev/null
  "$jit" -C "$1" up --no-plane --mount "$1/mnt" > "$1.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 300); do grep -q socket: "$1.log" 2>/dev/null && break; sleep 0.1; done
}
median() { python3 -c "import json,sys; r=json.load(open(sys.argv[1]))['results']; print(' '.join('%.4f' % x['median'] for x in r))" "$1"; }
ratio() { python3 -c "print('%.2f' % ($1 / $2))"; }

start "$work/big" "$(dirname "$big")"
start "$work/linux" "$linux"

# 1. Sequential read of 1 GiB.
hyperfine -N -r "$runs" --prepare "sh -c '$drop'" --export-json "$work/cold.json" \
  "dd if=$big of=/dev/null bs=1M" "dd if=$work/big/mnt/head/file.bin of=/dev/null bs=1M" >/dev/null 2>&1
hyperfine -N -r "$runs" -w 2 --export-json "$work/warm.json" \
  "dd if=$big of=/dev/null bs=1M" "dd if=$work/big/mnt/head/file.bin of=/dev/null bs=1M" >/dev/null 2>&1
read -r cold_native cold_mount < <(median "$work/cold.json")
read -r warm_native warm_mount < <(median "$work/warm.json")

# 2. find + stat over the Linux tree.
walk() { echo "find $1 -printf '%i %s %T@\\n'"; }
hyperfine -r "$runs" --prepare "sh -c '$drop'" --export-json "$work/walk-cold.json" \
  "$(walk "$linux") >/dev/null" "$(walk "$work/linux/mnt/head") >/dev/null" >/dev/null 2>&1
hyperfine -r "$runs" -w 2 --export-json "$work/walk-warm.json" \
  "$(walk "$linux") >/dev/null" "$(walk "$work/linux/mnt/head") >/dev/null" >/dev/null 2>&1
read -r wc_native wc_mount < <(median "$work/walk-cold.json")
read -r ww_native ww_mount < <(median "$work/walk-warm.json")
entries=$(find "$linux" | wc -l)
rss_kib=$(ps -o rss= -p "${pids[1]}" | tr -d ' ')

# 3. Building a real project: the jit-kernel crate from this repository, offline.
src="$work/src"
mkdir -p "$src" && (cd "$here" && git ls-files -z | xargs -0 cp --parents -t "$src")
mkdir "$work/linux/mnt/sws/build"
cp -a "$src" "$work/linux/mnt/sws/build/jit"
cp -a "$src" "$work/native-jit"
build() { echo "cd $1 && rm -rf target && cargo build --offline -q -p jit-kernel"; }
hyperfine -r 2 --export-json "$work/build.json" \
  "$(build "$work/native-jit")" "$(build "$work/linux/mnt/sws/build/jit")" >/dev/null 2>&1
read -r build_native build_mount < <(median "$work/build.json")

cat <<MD
## Mount (jitfs) against the native file system

Same run, same machine; native is ext4 on the same disk. Median of $runs runs (builds: 2); cold
runs drop the page cache first (which also drops the daemon's LMDB pages).

| Workload | native | mount | mount / native |
|---|---|---|---|
| sequential read, 1 GiB, cold | ${cold_native} s | ${cold_mount} s | $(ratio "$cold_mount" "$cold_native")× time |
| sequential read, 1 GiB, warm | ${warm_native} s | ${warm_mount} s | $(ratio "$warm_mount" "$warm_native")× time |
| find + stat, Linux tree ($entries entries), cold | ${wc_native} s | ${wc_mount} s | $(ratio "$wc_mount" "$wc_native")× |
| find + stat, Linux tree, warm | ${ww_native} s | ${ww_mount} s | $(ratio "$ww_mount" "$ww_native")× (goal ≤ 1.5) |
| cargo build -p jit-kernel (SWS vs native dir) | ${build_native} s | ${build_mount} s | $(ratio "$build_mount" "$build_native")× (goal ≤ 1.1) |

Throughput as read speed: native warm $(python3 -c "print('%.2f' % (1/$warm_native))") GiB/s, mount warm $(python3 -c "print('%.2f' % (1/$warm_mount))") GiB/s (goal ≥ 0.9× native);
cold $(python3 -c "print('%.2f' % (1/$cold_native))") vs $(python3 -c "print('%.2f' % (1/$cold_mount))") GiB/s.

Daemon: the cold walk resolves $entries entries (one LOOKUP each plus directory reads) at
$(python3 -c "print('%.0f' % ($entries / $wc_mount))") entries/s; resident memory with the whole Linux tree walked: $((rss_kib / 1024)) MiB.
MD
