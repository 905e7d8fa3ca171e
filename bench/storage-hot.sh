#!/usr/bin/env bash
# Hot content after issue #21 (compressed storage): does reading what the head holds stay as
# fast as before? Runs two builds side by side in the same run on the Linux 6.1 tree (whose
# source files are now stored compressed) and the 1 GiB random file (stored raw, as before):
#   - `jit import` of the Linux tree: time and store size;
#   - through the mount: `find` + `stat` over the tree, and reading every file (`cat`), cold
#     (page cache dropped) and warm; a sequential read of the 1 GiB file, cold;
#   - `jit checkout --into` of the Linux tree (every file written out);
#   - `jit import-git` of the jj history (../shared/data/jj-main.bundle).
# The native file system is measured in the same run for scale.
#
#   bench/storage-hot.sh BASELINE_JIT [RUNS]    (a jit built before #21; default 3 runs)
#   GC=1 bench/storage-hot.sh BASELINE_JIT      (each build runs `jit gc` on its universe after
#                                                the import: hot content as `jit gc` leaves it)
#   BASELINE_LABEL='at b95795f' ...             (what the baseline column is called)
#
# Needs root (drops the page cache), hyperfine, a release build and bench/import.sh's data.
set -euo pipefail
base=${1:?usage: bench/storage-hot.sh BASELINE_JIT [RUNS]}
runs=${2:-3}
label=${BASELINE_LABEL:-before #21}
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/bench/common.sh"
command -v hyperfine >/dev/null || apt-get install -y -qq hyperfine >/dev/null
prepare_linux
big="$data/onegig/file.bin"
[ -f "$big" ] || { echo "run bench/import.sh first (it makes $big)" >&2; exit 1; }
export JIT_AUTHOR="bench <b@x>" JIT_DATE="@1700000000"

work=$(mktemp -d "$data/storage-hot.XXXX")
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for m in "$work"/*/mnt; do umount -l "$m" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
drop='sync; echo 3 > /proc/sys/vm/drop_caches'
medians() { python3 -c "import json,sys; r=json.load(open(sys.argv[1]))['results']; print(' '.join('%.3f' % x['median'] for x in r))" "$1"; }
mib() { du -sk "$1" | awk '{printf "%.0f", $1 / 1024}'; }

# What both import: the Linux tree and the 1 GiB file (hard links, no copy).
src="$work/src"
mkdir -p "$src" && cp -al "$linux" "$src/linux" && ln "$big" "$src/file.bin"

# name binary → a universe of $src, mounted at $work/name/mnt
declare -A import_s store_mib
setup() {
  local name=$1 bin=$2 u="$work/$1" t
  "$bin" init "$u" >/dev/null
  t=$(date +%s.%N)
  "$bin" -C "$u" import "$src" -m linux -q >/dev/null
  import_s[$name]=$(printf '%.2f' "$(echo "$(date +%s.%N) - $t" | bc)")
  if [ "${GC:-0}" = 1 ]; then "$bin" -C "$u" gc >/dev/null; fi
  store_mib[$name]=$(mib "$u/.jit/store")
  "$bin" -C "$u" up --no-plane --mount "$u/mnt" > "$u.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 300); do grep -q socket: "$u.log" 2>/dev/null && break; sleep 0.1; done
}
setup before "$base"
setup after "$jit"
tree() { echo "$work/$1/mnt/head/linux"; }
hyperfine -N -r "$runs" --prepare "sh -c '$drop'" --export-json "$work/walk-cold.json" \
  "find $linux -printf %s" "find $(tree before) -printf %s" "find $(tree after) -printf %s" >/dev/null 2>&1
hyperfine -N -r "$runs" -w 1 --export-json "$work/walk-warm.json" \
  "find $linux -printf %s" "find $(tree before) -printf %s" "find $(tree after) -printf %s" >/dev/null 2>&1
catall() { echo "sh -c 'find $1 -type f -print0 | xargs -0 cat > /dev/null'"; }
hyperfine -N -r "$runs" --prepare "sh -c '$drop'" --export-json "$work/cat-cold.json" \
  "$(catall "$linux")" "$(catall "$(tree before)")" "$(catall "$(tree after)")" >/dev/null 2>&1
hyperfine -N -r "$runs" -w 1 --export-json "$work/cat-warm.json" \
  "$(catall "$linux")" "$(catall "$(tree before)")" "$(catall "$(tree after)")" >/dev/null 2>&1
big_read() { echo "dd if=$1 of=/dev/null bs=1M"; }
hyperfine -N -r "$runs" --prepare "sh -c '$drop'" --export-json "$work/big-cold.json" \
  "$(big_read "$big")" "$(big_read "$work/before/mnt/head/file.bin")" "$(big_read "$work/after/mnt/head/file.bin")" >/dev/null 2>&1
checkout() { echo "sh -c 'rm -rf $work/co-$1 && $2 -C $work/$1 checkout --into $work/co-$1 HEAD -q'"; }
hyperfine -N -r "$runs" --export-json "$work/checkout.json" \
  "sh -c 'rm -rf $work/co-native && cp -r $src $work/co-native'" \
  "$(checkout before "$base")" "$(checkout after "$jit")" >/dev/null 2>&1

# import-git of the jj history (../shared/data/jj-main.bundle), each build into a fresh universe.
bundle="$here/../shared/data/jj-main.bundle"
if [ -f "$bundle" ]; then
  git clone -q --bare "$bundle" "$work/jj.git"
  branch=$(git -C "$work/jj.git" for-each-ref --format='%(refname:short)' refs/heads | head -1)
  ig() { echo "sh -c 'rm -rf $work/ig-$1 && $2 init $work/ig-$1 >/dev/null && $2 -C $work/ig-$1 import-git $work/jj.git --branch $branch -q >/dev/null'"; }
  hyperfine -N -r "$runs" --export-json "$work/import-git.json" \
    "sh -c 'rm -rf $work/ig-git && git clone -q --bare --no-local $work/jj.git $work/ig-git'" \
    "$(ig before "$base")" "$(ig after "$jit")" >/dev/null 2>&1
fi

row() { # label json
  read -r native before after < <(medians "$2")
  python3 -c "import sys; n,b,a=map(float,sys.argv[2:]); print(f'| {sys.argv[1]} | {n:.2f} s | {b:.2f} s | {a:.2f} s | {a/b:.2f}× |')" "$1" "$native" "$before" "$after"
}
files=$(find "$linux" -type f | wc -l)
echo "## Hot content with compressed storage (\`bench/storage-hot.sh\`, median of $runs)"
echo
echo "The Linux 6.1 tree ($files files) and a 1 GiB random file, imported by the build $label and by this one, each mounted by its own daemon; native ext4 for scale. Cold runs drop the page cache."
echo
echo "| workload | native | $label | after | after ÷ before |"
echo "|---|---|---|---|---|"
echo "| \`jit import\` of the Linux tree and the 1 GiB file | — | ${import_s[before]} s | ${import_s[after]} s | $(python3 -c "print('%.2f' % (${import_s[after]} / ${import_s[before]}))")× |"
echo "| store after the import$([ "${GC:-0}" = 1 ] && echo ' and jit gc') | — | ${store_mib[before]} MiB | ${store_mib[after]} MiB | $(python3 -c "print('%.2f' % (${store_mib[after]} / ${store_mib[before]}))")× |"
row "find + stat through the mount, cold" "$work/walk-cold.json"
row "find + stat through the mount, warm" "$work/walk-warm.json"
row "read every file (cat), cold" "$work/cat-cold.json"
row "read every file (cat), warm" "$work/cat-warm.json"
row "sequential read, 1 GiB random file, cold" "$work/big-cold.json"
[ -f "$work/import-git.json" ] && row "\`jit import-git\` of the jj history (native: git clone --bare --no-local)" "$work/import-git.json"
row "\`jit checkout --into\` of the Linux tree (native: cp -r of the same files)" "$work/checkout.json"
