#!/usr/bin/env bash
# `jit log` on a real history against `git log` on the same history (issue #22): the jj history
# (../shared/data/jj-main.bundle, 11,606 commits) unless a git repository's path is given.
# Imports it with `jit import-git`, then times with hyperfine:
#   jit log -n 20            vs  git log -n 20
#   jit log -n 20 --graph --oneline  vs  git log -n 20 --graph --oneline
#   jit log --graph --oneline --all  vs  git log --graph --oneline --all   (the whole history)
# Prints a Markdown section with the ratios.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
source "$here/bench/common.sh"

source_repo=${1:-}
work=$(mktemp -d "${TMPDIR:-/tmp}/jit-log-bench.XXXX")
trap 'rm -rf "$work"' EXIT
if [ -z "$source_repo" ]; then
  git clone -q -b main "$here/../shared/data/jj-main.bundle" "$work/git" 2>/dev/null
  name="jj history (jj-main.bundle)"
else
  git clone -q "$source_repo" "$work/git"
  name="$source_repo"
fi
commits=$(git -C "$work/git" rev-list --count HEAD)
"$jit" init "$work/jit" >/dev/null
"$jit" -C "$work/jit" import-git "$work/git" -q >/dev/null

export NO_COLOR=1 PAGER=cat JIT_PAGER=cat
run() { # label, jit args, git args
  hyperfine -N --warmup 3 --runs 30 --export-json "$work/h.json" \
    "$jit -C $work/jit $2" "git -C $work/git $3" >/dev/null 2>&1
  python3 - "$work/h.json" "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
j, g = r[0]["median"] * 1000, r[1]["median"] * 1000
print(f"| {sys.argv[2]} | {j:.1f} ms | {g:.1f} ms | {j / g:.2f}× |")
PY
}
echo "## jit log on a real history (\`bench/log.sh\`)"
echo
echo "$name: $commits commits, imported with \`jit import-git\`; medians of 30 runs (hyperfine, no shell), output to /dev/null, no pager, no color."
echo
echo "| command | jit | git | jit ÷ git |"
echo "|---|---|---|---|"
run "\`log -n 20\`" "log -n 20" "log -n 20"
run "\`log -n 20 --graph --oneline\`" "log -n 20 --graph --oneline" "log -n 20 --graph --oneline"
run "\`log --graph --oneline --all\` (whole history)" "log --graph --oneline --all" "log --graph --oneline --all"
lines=$("$jit" -C "$work/jit" log --graph --oneline --all | wc -l)
merges=$("$jit" -C "$work/jit" log --graph --oneline --all | grep -c '^[| ]*|\\' || true)
echo
echo "\`jit log --graph --oneline --all\` drew $lines lines ($merges where a merge opens a lane)."
