#!/usr/bin/env bash
# Working-set benchmark on the Linux 6.1 tree, jit against git in the same run:
#   - commit of one changed file: `jit commit` (working SWS, through the daemon) vs `git commit -a`
#   - status with 10 changed files: `jit status` vs `git status`
# Prints a Markdown section. Uses hyperfine; needs a release build and bench/import.sh's data.
#
#   bench/sws.sh [RUNS]     (default 30 timed runs each)
set -euo pipefail

runs=${1:-30}
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/bench/common.sh"
command -v hyperfine >/dev/null || apt-get install -y -qq hyperfine >/dev/null
[ -d "$linux" ] || { echo "run bench/import.sh first (it prepares $linux)" >&2; exit 1; }

export JIT_AUTHOR="bench <b@x>" JIT_DATE="@1700000000"
export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=b@x GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=b@x

work=$(mktemp -d "$data/sws-bench.XXXX")
trap 'kill $daemon 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

# jit: the Linux tree as the first snapshot, a daemon serving it.
"$jit" init "$work/jit" >/dev/null
"$jit" -C "$work/jit" import "$linux" -m linux -q >/dev/null
"$jit" -C "$work/jit" up --no-mount > "$work/up.log" 2>&1 &
daemon=$!
for _ in $(seq 100); do [ -S "$work/jit/.jit/jit.sock" ] && break; sleep 0.1; done

# git: the same tree committed, as a worktree of its own.
cp -a "$linux" "$work/git"
(cd "$work/git" && git init -q && git add -A -f && git commit -qm linux)

# The ten files both sides change (in jit, through the working SWS; in git, in the worktree).
mapfile -t files < <(cd "$linux" && find . -name '*.c' | sed 's|^\./||' | sort | head -10)
patch_for() { # patch id, then files → one JSON patch appending a line to each
  local id=$1; shift
  printf '{"id":"%s","author":"bench","ops":[' "$id"
  local first=1
  for f in "$@"; do
    [ $first -eq 1 ] || printf ','
    first=0
    printf '{"op":"put","path":"%s","content":%s}' "$f" "$(python3 -c 'import json,sys; print(json.dumps(open(sys.argv[1],errors="surrogateescape").read()+"// "+sys.argv[2]+"\n"))' "$linux/$f" "$id")"
  done
  printf ']}'
}
working=$("$jit" -C "$work/jit" --json status | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
patch_for status-10 "${files[@]}" > "$work/ten.json"
"$jit" -C "$work/jit" sws apply "$working" "$work/ten.json" >/dev/null
for f in "${files[@]}"; do echo "// changed" >> "$work/git/$f"; done

hyperfine --runs "$runs" --warmup 3 --export-json "$work/status.json" \
  -n "jit status" "$jit -C $work/jit status" \
  -n "git status" "git -C $work/git status --porcelain" >&2

# Commit one changed file, each run on a freshly edited file (prepared outside the timing).
"$jit" -C "$work/jit" commit -m "ten files" >/dev/null
(cd "$work/git" && git commit -qam "ten files")
one="${files[0]}"
cat > "$work/prepare-jit.sh" <<EOF
#!/usr/bin/env bash
set -e
n=\$(( \$(cat $work/counter 2>/dev/null || echo 0) + 1 )); echo \$n > $work/counter
w=\$($jit -C $work/jit --json status | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
printf '{"id":"c%s","author":"b","ops":[{"op":"put","path":"$one","content":"v%s\\\\n"}]}' \$n \$n | $jit -C $work/jit sws apply \$w - >/dev/null
EOF
cat > "$work/prepare-git.sh" <<EOF
#!/usr/bin/env bash
echo \$RANDOM >> $work/git/$one
EOF
chmod +x "$work/prepare-jit.sh" "$work/prepare-git.sh"
jit_prepare="$work/prepare-jit.sh"
git_prepare="$work/prepare-git.sh"
hyperfine --runs "$runs" --warmup 2 --export-json "$work/commit.json" \
  -n "jit commit" --prepare "$jit_prepare" "$jit -C $work/jit commit -m one" \
  -n "git commit -a" --prepare "$git_prepare" "git -C $work/git commit -qam one" >&2

report() { # hyperfine json → "median ms (min–max)" per command, then the ratio
  python3 - "$1" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
def fmt(x):
    return f"{x['median']*1000:.1f} ms ({x['min']*1000:.1f}–{x['max']*1000:.1f})"
jit, git = r[0], r[1]
print(f"| {jit['command']} | {fmt(jit)} |")
print(f"| {git['command']} | {fmt(git)} |")
print(f"| **ratio** | **{jit['median']/git['median']:.3f}×** |")
EOF
}

echo "## Working sets on the Linux tree (\`bench/sws.sh\`, $runs runs each, median with min–max)"
echo
echo "jit through its daemon (each \`jit\` call is a new process speaking the RPC); git on the same tree in its own worktree. Page cache warm."
echo
echo "Status with 10 changed files:"
echo
echo "| command | time |"
echo "|---|---|"
report "$work/status.json"
echo
echo "Commit of one changed file (the edit itself is prepared outside the timing):"
echo
echo "| command | time |"
echo "|---|---|"
report "$work/commit.json"
