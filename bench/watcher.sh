#!/usr/bin/env bash
# Watcher benchmark, jit against git in the same run:
#   - edit → durable latency over N edits in a watched checkout (p50/p99)
#   - `jit status` in a watched checkout of the Linux tree with 10 changed files vs `git status`
#   - switching a checkout between two tags 2,000 files apart vs `git checkout`
# Prints a Markdown section. Uses hyperfine; needs a release build and bench/import.sh's data.
#
#   bench/watcher.sh [RUNS] [EDITS]     (defaults: 20 timed runs, 1000 edits)
set -euo pipefail

runs=${1:-20}
edits=${2:-1000}
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/bench/common.sh"
command -v hyperfine >/dev/null || apt-get install -y -qq hyperfine >/dev/null
(cd "$here" && cargo build --release -q -p jit-watcher --example latency >&2)
latency="$target/release/examples/latency"
[ -d "$linux" ] || { echo "run bench/import.sh first (it prepares $linux)" >&2; exit 1; }

export JIT_AUTHOR="bench <b@x>" JIT_DATE="@1700000000"
export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=b@x GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=b@x

work=$(mktemp -d "$data/watcher-bench.XXXX")
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
start_watch() { # checkout dir → waits for "watching"
  "$jit" watch "$1" > "$work/watch.$2.out" 2> "$work/watch.$2.err" &
  pids+=($!)
  for _ in $(seq 600); do grep -q watching "$work/watch.$2.out" 2>/dev/null && return; sleep 0.1; done
  echo "watcher did not start: $(cat "$work/watch.$2.err")" >&2; exit 1
}

# 1. Latency: a small universe behind a daemon, its checkout watched.
mkdir -p "$work/small-tree/src"
for i in $(seq 100); do echo "file $i" > "$work/small-tree/src/f$i.txt"; done
"$jit" init "$work/small" >/dev/null
"$jit" -C "$work/small" import "$work/small-tree" -m small -q >/dev/null
"$jit" -C "$work/small" up --no-mount > "$work/up-small.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -S "$work/small/.jit/jit.sock" ] && break; sleep 0.1; done
"$jit" -C "$work/small" checkout --into "$work/small-co" main -q >/dev/null
start_watch "$work/small-co" small
lat=$("$latency" "$work/small" "$work/small-co" "$edits")

# 2. Status on the Linux tree: jit checkout (watched) vs a git worktree, 10 files changed each.
"$jit" init "$work/jit" >/dev/null
"$jit" -C "$work/jit" import "$linux" -m linux -q >/dev/null
"$jit" -C "$work/jit" tag v1 >/dev/null
"$jit" -C "$work/jit" up --no-mount > "$work/up.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -S "$work/jit/.jit/jit.sock" ] && break; sleep 0.1; done
t0=$(date +%s.%N)
"$jit" -C "$work/jit" checkout --into "$work/co" v1 -q >/dev/null
t1=$(date +%s.%N)
start_watch "$work/co" linux
t2=$(date +%s.%N)
cp -a "$linux" "$work/git"
(cd "$work/git" && git init -q && git add -A -f && git commit -qm linux && git tag v1)
mapfile -t files < <(cd "$linux" && find . -name '*.c' | sed 's|^\./||' | sort | head -10)
for f in "${files[@]}"; do echo "// changed" >> "$work/co/$f"; echo "// changed" >> "$work/git/$f"; done
hyperfine --runs "$runs" --warmup 3 --export-json "$work/status.json" \
  "$jit -C $work/co status" "git -C $work/git status" >&2

# 3. Switching between two tags 2,000 files apart (v2 = v1 with 2,000 .c files changed).
for f in "${files[@]}"; do git -C "$work/git" checkout -q -- "$f"; done
"$jit" -C "$work/co" status >/dev/null
mapfile -t many < <(cd "$linux" && find . -name '*.h' | sed 's|^\./||' | sort | head -2000)
cp -a "$linux" "$work/tree2"
for f in "${many[@]}"; do echo "// v2" >> "$work/tree2/$f"; done
"$jit" -C "$work/jit" import "$work/tree2" -m v2 -q >/dev/null
"$jit" -C "$work/jit" tag v2 >/dev/null
for f in "${many[@]}"; do echo "// v2" >> "$work/git/$f"; done
(cd "$work/git" && git commit -qam v2 && git tag v2 && git checkout -q v1)
hyperfine --runs "$runs" --warmup 2 --export-json "$work/switch.json" \
  "$jit -C $work/co checkout -q v2 && $jit -C $work/co checkout -q v1" \
  "git -C $work/git checkout -q v2 && git -C $work/git checkout -q v1" >&2

report() { # hyperfine json → "median ms (min–max)" per command, then the ratio
  python3 - "$1" "${2:-1}" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
div = float(sys.argv[2])
def fmt(x):
    return f"{x['median']*1000/div:.1f} ms ({x['min']*1000/div:.1f}–{x['max']*1000/div:.1f})"
jit, git = r[0], r[1]
print(f"| jit | {fmt(jit)} |")
print(f"| git | {fmt(git)} |")
print(f"| **ratio jit/git** | **{jit['median']/git['median']:.3f}×** |")
EOF
}

echo "## On-disk checkouts and the watcher (\`bench/watcher.sh\`, $runs runs each, median with min–max)"
echo
echo "jit through its daemon; \`jit watch\` running on each checkout; git on the same tree in its own worktree. Page cache warm."
echo
python3 - "$lat" "$edits" <<'EOF'
import json, sys
l = json.loads(sys.argv[1])
print(f"Edit → durable latency over {sys.argv[2]} edits of one file (from the end of the write to the patch committed in LMDB; max {l['max_ms']:.2f} ms):")
print()
print("| percentile | latency | goal | ÷ goal |")
print("|---|---|---|---|")
for name, goal in (("p50", 3.0), ("p99", 10.0)):
    value = l[f"{name}_ms"]
    print(f"| {name} | {value:.2f} ms | ≤ {goal:.0f} ms | {value / goal:.2f}× |")
EOF
echo
printf 'Linux tree (%s files): `jit checkout --into` wrote it in %.1f s; the watcher'"'"'s start (initial stat walk of the index and one watch per directory) took %.1f s.\n' \
  "$(cd "$linux" && find . -type f | wc -l)" "$(echo "$t1 - $t0" | bc)" "$(echo "$t2 - $t1" | bc)"
echo
echo "\`status\` with 10 changed files (synchronized: cookie round trip through the watcher, then the SWS's changes):"
echo
echo "| command | time |"
echo "|---|---|"
report "$work/status.json"
echo
echo "Switching between two tags 2,000 files apart (one switch; measured as there-and-back, halved):"
echo
echo "| command | time |"
echo "|---|---|"
report "$work/switch.json" 2
