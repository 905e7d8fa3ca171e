#!/usr/bin/env bash
# Import benchmark: `jit import` against `git add -A && git commit` on the same trees in the same
# run — the Linux 6.1 source (Debian's linux-source-6.1) and a single 1 GiB file, plus the cost of
# a one-byte change to that file. Prints a Markdown report on stdout.
#
#   bench/import.sh [RUNS]        (default 3 runs per measurement; needs a release build)
#
# Data lives under $JIT_BENCH_DIR (default /var/tmp/jit-bench). Not part of the test suite.
set -euo pipefail

runs=${1:-3}
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/bench/common.sh"

need /usr/bin/time time
need bc bc

prepare_linux
big="$data/onegig"
if [ ! -f "$big/file.bin" ]; then
  mkdir -p "$big"
  head -c 1073741824 /dev/urandom > "$big/file.bin"
fi

export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=b@x GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=b@x
export JIT_AUTHOR="bench <b@x>" JIT_DATE="@1700000000"

# measure LABEL CMD... → prints "seconds maxrss_kib" after running CMD under GNU time.
measure() {
  local out
  out=$(mktemp)
  /usr/bin/time -f '%e %M' -o "$out" "$@" >/dev/null 2>&1
  cat "$out"
  rm -f "$out"
}

warm() { find "$1" -type f -print0 | xargs -0 cat > /dev/null; }

# Peak anonymous RSS (KiB) of PID, sampled every 20 ms until it exits: the process's own memory,
# without the clean, shared page-cache pages of LMDB's memory map that max RSS also counts.
anon_peak() {
  local pid=$1 peak=0 now
  while kill -0 "$pid" 2>/dev/null; do
    now=$(awk '/^RssAnon:/{print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    [ -n "$now" ] && [ "$now" -gt "$peak" ] && peak=$now
    sleep 0.02
  done
  echo "$peak"
}

# One jit import of TREE into a fresh universe; prints "seconds rss anon store_bytes repo".
jit_import() {
  local tree=$1 repo out pid anon
  repo=$(mktemp -d "$data/jit-repo.XXXX")
  out=$(mktemp)
  "$jit" init "$repo" >/dev/null
  /usr/bin/time -f '%e %M' -o "$out" "$jit" -C "$repo" import "$tree" -m bench -q >/dev/null 2>&1 &
  sleep 0.05
  pid=$(pgrep -n -f "$jit -C $repo import" || true)
  anon=$( [ -n "$pid" ] && anon_peak "$pid" || echo 0)
  wait
  read -r secs rss < "$out"
  rm -f "$out"
  echo "$secs $rss $anon $(du -sb "$repo/.jit" | cut -f1) $repo"
}

# One git add+commit of TREE into a fresh repository; prints "seconds rss store_bytes repo".
git_import() {
  local tree=$1 gitdir
  gitdir=$(mktemp -d "$data/git-repo.XXXX")
  git --git-dir="$gitdir" --work-tree="$tree" init -q
  read -r secs rss < <(measure sh -c "cd '$tree' && git --git-dir='$gitdir' --work-tree=. add -A -f && git --git-dir='$gitdir' --work-tree=. commit -q -m bench")
  echo "$secs $rss $(du -sb "$gitdir" | cut -f1) $gitdir"
}


compare() {
  local name=$1 tree=$2
  warm "$tree"
  local jt=() jr=() ja=() js=() gt=() gr=() gs=()
  for _ in $(seq "$runs"); do
    read -r t r a s repo < <(jit_import "$tree"); jt+=("$t"); jr+=("$r"); ja+=("$a"); js+=("$s"); rm -rf "$repo"
    read -r t r s repo < <(git_import "$tree"); gt+=("$t"); gr+=("$r"); gs+=("$s"); rm -rf "$repo"
  done
  local jmed gmed
  jmed=$(printf '%s\n' "${jt[@]}" | median); gmed=$(printf '%s\n' "${gt[@]}" | median)
  local jrss janon grss jstore gstore
  jrss=$(printf '%s\n' "${jr[@]}" | median); grss=$(printf '%s\n' "${gr[@]}" | median)
  janon=$(printf '%s\n' "${ja[@]}" | median)
  jstore=$(printf '%s\n' "${js[@]}" | median); gstore=$(printf '%s\n' "${gs[@]}" | median)
  printf '| %s | jit import | %s s (%s) | %d MiB | %d MiB | %d MiB |\n' "$name" "$jmed" "$(printf '%s\n' "${jt[@]}" | minmax)" $((jrss / 1024)) $((janon / 1024)) $((jstore / 1048576))
  printf '| %s | git add -A && git commit | %s s (%s) | %d MiB | – | %d MiB |\n' "$name" "$gmed" "$(printf '%s\n' "${gt[@]}" | minmax)" $((grss / 1024)) $((gstore / 1048576))
  printf '| %s | **ratio jit/git** | **%.3f×** | %.2f× | | %.2f× |\n' "$name" "$(echo "$jmed / $gmed" | bc -l)" "$(echo "$jrss / $grss" | bc -l)" "$(echo "$jstore / $gstore" | bc -l)"
}

files=$(find "$linux" -type f | wc -l)
bytes=$(du -sb "$linux" | cut -f1)
echo "## Import (\`bench/import.sh\`, $runs runs each, median with min–max)"
echo
echo "Machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB RAM, $(uname -r), $(df -T "$data" | awk 'NR==2{print $2}') at $data; $(git --version); jit $("$jit" --version | cut -d' ' -f2) (release build)."
echo "Linux tree: $files files, $((bytes / 1048576)) MiB. Page cache warm for every run."
echo
echo "| tree | command | wall time | peak RSS | peak anon RSS | store size |"
echo "|---|---|---|---|---|---|"
compare "linux-6.1" "$linux"
compare "1 GiB file" "$big"

# A one-byte change to the 1 GiB file: what each system stores anew.
repo=$(mktemp -d "$data/jit-repo.XXXX"); "$jit" init "$repo" >/dev/null
"$jit" -C "$repo" import "$big" -m one -q >/dev/null
before=$(du -sb "$repo/.jit" | cut -f1)
printf '\x01' | dd of="$big/file.bin" bs=1 seek=536870912 conv=notrunc status=none
new_nodes=$("$jit" -C "$repo" --json import "$big" -m two | sed -E 's/.*"new_nodes":([0-9]+).*/\1/')
after=$(du -sb "$repo/.jit" | cut -f1)
gitdir=$(mktemp -d "$data/git-repo.XXXX"); git --git-dir="$gitdir" --work-tree="$big" init -q
printf '\x02' | dd of="$big/file.bin" bs=1 seek=536870912 conv=notrunc status=none
git --git-dir="$gitdir" --work-tree="$big" add -A && git --git-dir="$gitdir" --work-tree="$big" commit -qm one
gbefore=$(du -sb "$gitdir" | cut -f1)
printf '\x03' | dd of="$big/file.bin" bs=1 seek=536870912 conv=notrunc status=none
git --git-dir="$gitdir" --work-tree="$big" add -A && git --git-dir="$gitdir" --work-tree="$big" commit -qm two
gafter=$(du -sb "$gitdir" | cut -f1)
rm -rf "$repo" "$gitdir"
echo
echo "One-byte change in the middle of the 1 GiB file, committed again: jit stores $new_nodes new nodes, store grows by $(( (after - before) / 1024 )) KiB; git's store grows by $(( (gafter - gbefore) / 1048576 )) MiB."
