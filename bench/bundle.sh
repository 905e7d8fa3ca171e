#!/usr/bin/env bash
# Bundle benchmark (issue #20): a published snapshot of the Linux 6.1 tree carried by one file —
# `jit federation export --bundle` against `git bundle create`, `jit federation verify` (offline)
# against `git bundle verify`, and the offline import into another universe against
# `git clone --bare` from the bundle. Prints a Markdown report on stdout.
#
#   bench/bundle.sh [RUNS]        (default 3 runs per measurement; needs a release build)
#
# Data lives under $JIT_BENCH_DIR (default /var/tmp/jit-bench). Not part of the test suite.
set -euo pipefail

runs=${1:-3}
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/bench/common.sh"
need bc bc
prepare_linux

export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=b@x GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=b@x
export JIT_AUTHOR="bench <b@x>" JIT_DATE="@1700000000"

work=$(mktemp -d "$data/bundle.XXXX")
trap 'rm -rf "$work"' EXIT
seconds() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N); echo "$e - $s" | bc; }

"$jit" init "$work/src" >/dev/null
"$jit" -C "$work/src" import "$linux" -m linux -q >/dev/null
"$jit" -C "$work/src" publish main --as linux >/dev/null
git init -q --bare "$work/src.git"
git --git-dir="$work/src.git" --work-tree="$linux" add -A -f
git --git-dir="$work/src.git" --work-tree="$linux" commit -q -m linux
git --git-dir="$work/src.git" repack -adq

je=(); ge=(); jv=(); gv=(); ji=(); gi=()
for i in $(seq "$runs"); do
  rm -f "$work/linux.jitbundle" "$work/linux.gitbundle"
  je+=("$(seconds "$jit" -C "$work/src" federation export --bundle "$work/linux.jitbundle" linux)")
  ge+=("$(seconds git --git-dir="$work/src.git" bundle create "$work/linux.gitbundle" --all)")
  jv+=("$(seconds "$jit" -C "$work" federation verify "$work/linux.jitbundle")")
  gv+=("$(seconds git --git-dir="$work/src.git" bundle verify "$work/linux.gitbundle")")
  "$jit" init "$work/imp-$i" >/dev/null
  ji+=("$(seconds "$jit" -C "$work/imp-$i" federation import "$work/linux.jitbundle")")
  [ "$("$jit" -C "$work/imp-$i" federation ls --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["epoch"])')" = 1 ] || { echo "jit bundle import failed" >&2; exit 1; }
  gi+=("$(seconds git clone -q --bare "$work/linux.gitbundle" "$work/git-$i.git")")
  [ -f "$work/git-$i.git/HEAD" ] || { echo "git clone from the bundle failed" >&2; exit 1; }
done
jsize=$(stat -c %s "$work/linux.jitbundle"); gsize=$(stat -c %s "$work/linux.gitbundle")

row() { # label jit-values git-values
  local label=$1 jm gm; shift
  local -n jvals=$1 gvals=$2
  jm=$(printf '%s\n' "${jvals[@]}" | median); gm=$(printf '%s\n' "${gvals[@]}" | median)
  printf '| %s | %.3f s (%s) | %.3f s (%s) | **%.3f×** |\n' "$label" "$jm" "$(printf '%.3f\n' "${jvals[@]}" | minmax)" "$gm" "$(printf '%.3f\n' "${gvals[@]}" | minmax)" "$(echo "$jm / $gm" | bc -l)"
}
files=$(find "$linux" -type f | wc -l)
echo "## Bundles (\`bench/bundle.sh\`, $runs runs each, median with min–max)"
echo
echo "A published snapshot of the Linux 6.1 tree ($files files) in one file, with no network: \`jit federation export --bundle\` (identity chain, signed head and log, inclusion proof, signed manifest, every node in walk order) against \`git bundle create --all\` of the same tree (packed repository); the offline check, \`jit federation verify\` (every signature and every node's hash, in order) against \`git bundle verify\`; the import into another universe, \`jit federation import FILE\`, against \`git clone --bare\` from the bundle. $(git --version)."
echo
echo "| measure | jit | git | ratio jit/git |"
echo "|---|---|---|---|"
row "export" je ge
row "verify offline" jv gv
row "import offline (git: clone from the bundle)" ji gi
printf '| bundle size | %d MiB | %d MiB | %.2f× |\n' $((jsize / 1048576)) $((gsize / 1048576)) "$(echo "$jsize / $gsize" | bc -l)"
