#!/usr/bin/env bash
# Storage and clone against git on real histories (issue #21): for each git repository given
# (default: ../shared/data/ripgrep-master.bundle and jj-main.bundle), and for one snapshot of the
# Linux 6.1 tree (LINUX=0 to skip it, REPOS=0 to run only it):
#   - git's packed size (a bare clone; for the Linux tree `git add`, `commit` and `gc`) beside
#     the jit store after `jit import-git` (or `jit import`) and after `jit gc`;
#   - the import's and gc's times;
#   - `jit clone` over loopback TCP from a daemon serving the gc'd store, against
#     `git clone --bare --no-local` (the pack transport): time (the median of three each,
#     alternating), bytes moved, the replica's size.
# Sizes are allocated bytes (du -s). Prints a Markdown section.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
source "$here/bench/common.sh"

repos=("$@")
if [ ${#repos[@]} -eq 0 ]; then
  repos=("$here/../shared/data/ripgrep-master.bundle" "$here/../shared/data/jj-main.bundle")
fi
work=$(mktemp -d "${TMPDIR:-/var/tmp}/jit-storage-bench.XXXX")
daemon=
cleanup() {
  if [ -n "$daemon" ]; then kill "$daemon" 2>/dev/null || true; wait "$daemon" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

size() { du -sk "$1" | awk '{printf "%.1f", $1 / 1024}'; }   # MiB allocated
secs() { local start=$1; python3 -c "import time,sys; print(f'{time.time() - float(sys.argv[1]):.2f}')" "$start"; }
now() { python3 -c 'import time; print(time.time())'; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=b@x GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=b@x
export JIT_AUTHOR="bench <b@x>" JIT_DATE="@1700000000"

# clone_row NAME COMMITS GIT_DIR GIT_SIZE UNIVERSE IMPORT_S RAW_SIZE GC_S → one table row
clone_row() {
  local name=$1 commits=$2 gitdir=$3 git_size=$4 u=$5 import_s=$6 raw=$7 gc_s=$8
  local jit_size t git_clone_s git_bytes port jit_clone_s jit_bytes replica
  jit_size=$(size "$u/.jit/store")
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "$jit" -C "$u" up --no-mount --listen "tcp/127.0.0.1:$port" >"$work/daemon.log" 2>&1 &
  daemon=$!
  "$jit" -C "$u" wait --timeout 60 >/dev/null
  # Three clones each, alternating git and jit (this machine's timings drift); the medians.
  local git_times=() jit_times=() run
  for run in 1 2 3; do
    rm -rf "$work/clone.git" "$work/replica"
    # Each starts with nothing of the other's still being written back to disk.
    sync; t=$(now); git clone -q --bare --no-local "file://$gitdir" "$work/clone.git"; git_times+=("$(secs "$t")")
    sync; t=$(now); "$jit" clone "tcp/127.0.0.1:$port" "$work/replica" --json > "$work/clone.json"; jit_times+=("$(secs "$t")")
  done
  git_clone_s=$(median "${git_times[@]}"); jit_clone_s=$(median "${jit_times[@]}")
  git_bytes=$(du -sb "$work/clone.git/objects/pack" | awk '{print $1}')
  rm -rf "$work/clone.git"
  kill "$daemon"; wait "$daemon" 2>/dev/null || true; daemon=
  jit_bytes=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["fetched_bytes"])' "$work/clone.json")
  replica=$(size "$work/replica/.jit/store")
  rm -rf "$work/replica"
  python3 - "$name" "$commits" "$git_size" "$raw" "$jit_size" "$import_s" "$gc_s" "$git_clone_s" "$jit_clone_s" "$git_bytes" "$jit_bytes" "$replica" <<'PY'
import sys
name, commits, g, raw, j, imp, gcs, gc, jc, gb, jb, rep = sys.argv[1:]
g, raw, j, gc, jc, gb, jb, rep = float(g), float(raw), float(j), float(gc), float(jc), int(gb), int(jb), float(rep)
print(f"| {name} | {commits} | {g:.1f} | {raw:.1f} | {j:.1f} | **{j / g:.2f}×** | {float(imp):.1f} s | {float(gcs):.1f} s | {gc:.2f} s | {jc:.2f} s | **{jc / gc:.2f}×** | {gb / 2**20:.1f} / {jb / 2**20:.1f} MiB (**{jb / gb:.2f}×**) | {rep:.1f} ({rep / j:.2f}× its source) |")
PY
}

echo "## Storage and clone against git (\`bench/storage.sh\`, issue #21)"
echo
echo "Sizes are allocated MiB (\`du -s\`). git: a bare clone (its pack); for the Linux tree one commit after \`git gc\`. jit: the store after \`jit import-git\` (or \`jit import\`), then after \`jit gc\`; a replica after \`jit clone\` over loopback TCP from a daemon serving the gc'd store. git's clone is \`git clone --bare --no-local\` (the pack protocol, no hard links). Clone times are the median of three runs each, git and jit alternating, each after a \`sync\`."
echo
echo "| data | commits | git packed | jit after import | jit after gc | jit ÷ git | import | gc | git clone | jit clone | clone ÷ | bytes moved git / jit | replica |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for repo in "${repos[@]}"; do
  [ "${REPOS:-1}" = 0 ] && break   # REPOS=0: only the Linux tree
  name=$(basename "$repo")
  rm -rf "${work:?}"/*
  git clone -q --bare "$repo" "$work/src.git" 2>/dev/null
  branch=$(git -C "$work/src.git" for-each-ref --format='%(refname:short)' refs/heads | head -1)
  git -C "$work/src.git" symbolic-ref HEAD "refs/heads/$branch"
  commits=$(git -C "$work/src.git" rev-list --count "$branch")
  git_size=$(size "$work/src.git")
  "$jit" init "$work/u" >/dev/null
  t=$(now); "$jit" -C "$work/u" import-git "$work/src.git" --branch "$branch" -q >/dev/null; import_s=$(secs "$t")
  raw=$(size "$work/u/.jit/store")
  t=$(now); "$jit" -C "$work/u" gc >/dev/null; gc_s=$(secs "$t")
  clone_row "$name" "$(printf "%'d" "$commits")" "$work/src.git" "$git_size" "$work/u" "$import_s" "$raw" "$gc_s"
done
if [ "${LINUX:-1}" != 0 ]; then
  prepare_linux
  rm -rf "${work:?}"/*
  git init -q "$work/linux.git"
  cp -al "$linux" "$work/linux.git/tree" 2>/dev/null || cp -a "$linux" "$work/linux.git/tree"
  (cd "$work/linux.git" && git add -A -f && git -c gc.auto=0 commit -qm linux && git gc -q)   # -f: Debian's tree ignores "/*"
  git_size=$(du -sk "$work/linux.git/.git" | awk '{printf "%.1f", $1 / 1024}')
  git -C "$work/linux.git" config core.bare false
  "$jit" init "$work/u" >/dev/null
  t=$(now); "$jit" -C "$work/u" import "$linux" -m linux -q >/dev/null; import_s=$(secs "$t")
  raw=$(size "$work/u/.jit/store")
  t=$(now); "$jit" -C "$work/u" gc >/dev/null; gc_s=$(secs "$t")
  clone_row "Linux 6.1 tree (one snapshot)" 1 "$work/linux.git/.git" "$git_size" "$work/u" "$import_s" "$raw" "$gc_s"
fi
