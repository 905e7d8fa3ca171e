#!/usr/bin/env bash
# Storage and clone against git on real histories (issue #21's baseline): for each git
# repository given (default: ../shared/data/ripgrep-master.bundle and jj-main.bundle),
#   - git's packed size (a bare clone) beside the jit store after `jit import-git`;
#   - `jit import-git`'s time;
#   - `jit clone` over loopback TCP against `git clone --bare --no-local` (the pack transport):
#     time, bytes moved, and the replica's size.
# Sizes are allocated bytes (du -s), so LMDB's unused file tail does not count.
# Prints a Markdown section.
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

echo "## Storage and clone against git (\`bench/storage.sh\`, issue #21's baseline)"
echo
echo "Sizes are allocated MiB (\`du -s\`). git: a bare clone (its pack). jit: the store after \`jit import-git\`, and a replica after \`jit clone\` over loopback TCP; git's clone is \`git clone --bare --no-local\` (the pack protocol, no hard links)."
echo
echo "| history | commits | git packed | jit store | jit ÷ git | import-git | git clone | jit clone | clone ÷ | bytes moved git / jit | replica |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for repo in "${repos[@]}"; do
  name=$(basename "$repo")
  rm -rf "$work"/*
  git clone -q --bare "$repo" "$work/src.git" 2>/dev/null
  branch=$(git -C "$work/src.git" for-each-ref --format='%(refname:short)' refs/heads | head -1)
  git -C "$work/src.git" symbolic-ref HEAD "refs/heads/$branch"
  commits=$(git -C "$work/src.git" rev-list --count "$branch")
  git_size=$(size "$work/src.git")
  "$jit" init "$work/u" >/dev/null
  t=$(now); "$jit" -C "$work/u" import-git "$work/src.git" --branch "$branch" -q >/dev/null; import_s=$(secs "$t")
  jit_size=$(size "$work/u/.jit/store")
  # git clone through the pack protocol.
  t=$(now); git clone -q --bare --no-local "file://$work/src.git" "$work/clone.git"; git_clone_s=$(secs "$t")
  git_bytes=$(du -sb "$work/clone.git/objects/pack" | awk '{print $1}')
  # jit clone over loopback TCP from a daemon.
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "$jit" -C "$work/u" up --no-mount --listen "tcp/127.0.0.1:$port" >"$work/daemon.log" 2>&1 &
  daemon=$!
  "$jit" -C "$work/u" wait --timeout 60 >/dev/null
  t=$(now); "$jit" clone "tcp/127.0.0.1:$port" "$work/replica" --json > "$work/clone.json"; jit_clone_s=$(secs "$t")
  kill "$daemon"; wait "$daemon" 2>/dev/null || true; daemon=
  jit_bytes=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["fetched_bytes"])' "$work/clone.json")
  replica=$(size "$work/replica/.jit/store")
  python3 - "$name" "$commits" "$git_size" "$jit_size" "$import_s" "$git_clone_s" "$jit_clone_s" "$git_bytes" "$jit_bytes" "$replica" <<'PY'
import sys
name, commits, g, j, imp, gc, jc, gb, jb, rep = sys.argv[1:]
g, j, gc, jc, gb, jb, rep = float(g), float(j), float(gc), float(jc), int(gb), int(jb), float(rep)
print(f"| {name} | {int(commits):,} | {g:.1f} | {j:.1f} | {j / g:.1f}× | {float(imp):.1f} s | {gc:.2f} s | {jc:.2f} s | {jc / gc:.2f}× | {gb / 2**20:.1f} / {jb / 2**20:.1f} MiB ({jb / gb:.1f}×) | {rep:.1f} ({rep / j:.2f}× its source) |")
PY
done
