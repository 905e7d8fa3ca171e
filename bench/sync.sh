#!/usr/bin/env bash
# Sync benchmark: a replica of the Linux 6.1 tree pulled over loopback TCP — `jit clone` from a
# daemon (`jit up --listen tcp/127.0.0.1:PORT`) against `git clone --bare` from `git daemon`
# serving the same tree — and then one new commit touching 10 files: `jit sync pull` against
# `git fetch`. Neither side writes a working tree. Prints a Markdown report on stdout.
#
#   bench/sync.sh [RUNS]        (default 3 runs per measurement; needs a release build)
#
# Data lives under $JIT_BENCH_DIR (default /var/tmp/jit-bench). Not part of the test suite.
set -euo pipefail

runs=${1:-3}
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/bench/common.sh"
need bc bc
need python3 python3
prepare_linux

export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=b@x GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=b@x
export JIT_AUTHOR="bench <b@x>" JIT_DATE="@1700000000"

work=$(mktemp -d "$data/sync.XXXX")
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }
seconds() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N); echo "$e - $s" | bc; }

# The source: a universe and a packed git repository of the same tree.
"$jit" init "$work/src" >/dev/null
"$jit" -C "$work/src" import "$linux" -m linux -q >/dev/null
git init -q --bare "$work/src.git"
git --git-dir="$work/src.git" --work-tree="$linux" add -A -f
git --git-dir="$work/src.git" --work-tree="$linux" commit -q -m linux
git --git-dir="$work/src.git" repack -adq

jport=$(free_port); gport=$(free_port)
"$jit" -C "$work/src" up --no-mount --listen "tcp/127.0.0.1:$jport" >/dev/null 2>&1 & pids+=($!)
git daemon --reuseaddr --listen=127.0.0.1 --port="$gport" --base-path="$work" --export-all "$work" >/dev/null 2>&1 & pids+=($!)
wait_port "$jport"; wait_port "$gport"

jc=(); gc=(); js=(); gs=()
for i in $(seq "$runs"); do
  jc+=("$(seconds "$jit" clone "tcp/127.0.0.1:$jport" "$work/jit-$i" -q)")
  [ -f "$work/jit-$i/.jit/HEAD" ] || { echo "jit clone failed" >&2; exit 1; }
  gc+=("$(seconds git clone -q --bare "git://127.0.0.1:$gport/src.git" "$work/git-$i.git")")
  [ -f "$work/git-$i.git/HEAD" ] || { echo "git clone failed" >&2; exit 1; }
  js+=("$(du -sb "$work/jit-$i/.jit" | cut -f1)"); gs+=("$(du -sb "$work/git-$i.git" | cut -f1)")
done

# One commit touching 10 files, on both sources.
mapfile -t changed < <(cd "$linux" && find kernel/sched -name '*.c' | sort | head -10)
python3 - "$linux" "${changed[@]}" > "$work/patch.json" <<'PY'
import json, sys
root, paths = sys.argv[1], sys.argv[2:]
ops = [{"op": "put", "path": p, "content": open(f"{root}/{p}").read() + "/* changed */\n"} for p in paths]
print(json.dumps({"id": "bench-10", "author": "bench", "ops": ops}))
PY
sws=$("$jit" -C "$work/src" sws new --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
"$jit" -C "$work/src" sws apply "$sws" "$work/patch.json" >/dev/null
"$jit" -C "$work/src" sws commit "$sws" -m "10 files" >/dev/null
export GIT_INDEX_FILE="$work/index"
git --git-dir="$work/src.git" read-tree HEAD
for p in "${changed[@]}"; do
  blob=$( { cat "$linux/$p"; printf '/* changed */\n'; } | git --git-dir="$work/src.git" hash-object -w --stdin)
  git --git-dir="$work/src.git" update-index --add --cacheinfo "100644,$blob,$p"
done
tree=$(git --git-dir="$work/src.git" write-tree)
commit=$(echo "10 files" | git --git-dir="$work/src.git" commit-tree "$tree" -p HEAD)
git --git-dir="$work/src.git" update-ref HEAD "$commit"
unset GIT_INDEX_FILE

jp=(); gp=()
for i in $(seq "$runs"); do
  jp+=("$(seconds "$jit" -C "$work/jit-$i" sync pull -q)")
  gp+=("$(seconds git --git-dir="$work/git-$i.git" fetch -q origin '+refs/heads/*:refs/heads/*')")
done
[ "$("$jit" -C "$work/jit-1" log -n 1 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["message"])')" = "10 files" ] || { echo "jit pull did not arrive" >&2; exit 1; }
[ "$(git --git-dir="$work/git-1.git" log -1 --format=%s)" = "10 files" ] || { echo "git fetch did not arrive" >&2; exit 1; }

row() { # label jit-values git-values unit
  local label=$1 jm gm; shift
  local -n jv=$1 gv=$2
  jm=$(printf '%s\n' "${jv[@]}" | median); gm=$(printf '%s\n' "${gv[@]}" | median)
  printf '| %s | %.3f s (%s) | %.3f s (%s) | **%.3f×** |\n' "$label" "$jm" "$(printf '%.3f\n' "${jv[@]}" | minmax)" "$gm" "$(printf '%.3f\n' "${gv[@]}" | minmax)" "$(echo "$jm / $gm" | bc -l)"
}
files=$(find "$linux" -type f | wc -l)
jsize=$(printf '%s\n' "${js[@]}" | median); gsize=$(printf '%s\n' "${gs[@]}" | median)
echo "## Sync (\`bench/sync.sh\`, $runs runs each, median with min–max)"
echo
echo "A replica pulls the Linux 6.1 tree ($files files) over loopback TCP: \`jit clone\` from \`jit up --listen\` against \`git clone --bare\` from \`git daemon\` (the source repository packed), then one new commit that changes 10 files under \`kernel/sched/\`: \`jit sync pull\` against \`git fetch\`. Neither writes a working tree. $(git --version)."
echo
echo "| measure | jit | git | ratio jit/git |"
echo "|---|---|---|---|"
row "clone of linux-6.1" jc gc
row "pull of one commit touching 10 files" jp gp
printf '| replica size on disk | %d MiB | %d MiB | %.2f× |\n' $((jsize / 1048576)) $((gsize / 1048576)) "$(echo "$jsize / $gsize" | bc -l)"
