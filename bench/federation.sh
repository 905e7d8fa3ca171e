#!/usr/bin/env bash
# Federation benchmark: another universe imports a published snapshot of the Linux 6.1 tree over
# loopback TCP — `jit federation import` from a daemon (`jit up --listen tcp/127.0.0.1:PORT`)
# against `git clone --bare` from `git daemon` serving the same tree — and then the publisher
# changes one file and publishes a new epoch: the re-import against `git fetch`, with the bytes
# that crossed the wire (counted by a TCP relay in front of each server) against the bytes of
# the nodes that were new. Prints a Markdown report on stdout.
#
#   bench/federation.sh [RUNS]        (default 3 runs per measurement; needs a release build)
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

work=$(mktemp -d "$data/federation.XXXX")
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

# A TCP relay that counts the bytes it carries both ways: `relay LISTEN TARGET COUNTFILE`.
# The count file holds the running total, rewritten after every transfer.
cat > "$work/relay.py" <<'PY'
import asyncio, sys
listen, target, countfile = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
total = 0
def add(n):
    global total
    total += n
    with open(countfile, "w") as f:
        f.write(str(total))
async def pipe(reader, writer):
    try:
        while data := await reader.read(1 << 16):
            add(len(data))
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()
async def serve(reader, writer):
    up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target)
    await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer), return_exceptions=True)
async def main():
    add(0)
    server = await asyncio.start_server(serve, "127.0.0.1", listen)
    async with server:
        await server.serve_forever()
asyncio.run(main())
PY
counted() { cat "$1"; }

# The publisher: a universe and a packed git repository of the same tree.
"$jit" init "$work/src" >/dev/null
"$jit" -C "$work/src" import "$linux" -m linux -q >/dev/null
"$jit" -C "$work/src" publish main --as linux >/dev/null
universe=$("$jit" -C "$work/src" info --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["universe"])')
git init -q --bare "$work/src.git"
git --git-dir="$work/src.git" --work-tree="$linux" add -A -f
git --git-dir="$work/src.git" --work-tree="$linux" commit -q -m linux
git --git-dir="$work/src.git" repack -adq

jport=$(free_port); gport=$(free_port); jrelay=$(free_port); grelay=$(free_port)
"$jit" -C "$work/src" up --no-mount --listen "tcp/127.0.0.1:$jport" >/dev/null 2>&1 & pids+=($!)
git daemon --reuseaddr --listen=127.0.0.1 --port="$gport" --base-path="$work" --export-all "$work" >/dev/null 2>&1 & pids+=($!)
python3 "$work/relay.py" "$jrelay" "$jport" "$work/jit.bytes" & pids+=($!)
python3 "$work/relay.py" "$grelay" "$gport" "$work/git.bytes" & pids+=($!)
wait_port "$jport"; wait_port "$gport"; wait_port "$jrelay"; wait_port "$grelay"
jend="tcp/127.0.0.1:$jport"

ji=(); gc=()
for i in $(seq "$runs"); do
  "$jit" init "$work/imp-$i" >/dev/null
  ji+=("$(seconds "$jit" -C "$work/imp-$i" federation import "$universe" linux --from "$jend" -q)")
  [ "$("$jit" -C "$work/imp-$i" federation ls --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["epoch"])')" = 1 ] || { echo "jit import failed" >&2; exit 1; }
  gc+=("$(seconds git clone -q --bare "git://127.0.0.1:$gport/src.git" "$work/git-$i.git")")
  [ -f "$work/git-$i.git/HEAD" ] || { echo "git clone failed" >&2; exit 1; }
done

# One file changed and published as a new epoch, on both sources.
changed=kernel/sched/core.c
python3 - "$linux" "$changed" > "$work/patch.json" <<'PY'
import json, sys
root, path = sys.argv[1], sys.argv[2]
print(json.dumps({"id": "bench-1", "author": "bench", "ops": [
    {"op": "put", "path": path, "content": open(f"{root}/{path}").read() + "/* changed */\n"}]}))
PY
sws=$("$jit" -C "$work/src" sws new --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
"$jit" -C "$work/src" sws apply "$sws" "$work/patch.json" >/dev/null
"$jit" -C "$work/src" sws commit "$sws" -m "one file" >/dev/null
"$jit" -C "$work/src" publish main --as linux >/dev/null
export GIT_INDEX_FILE="$work/index"
git --git-dir="$work/src.git" read-tree HEAD
blob=$( { cat "$linux/$changed"; printf '/* changed */\n'; } | git --git-dir="$work/src.git" hash-object -w --stdin)
git --git-dir="$work/src.git" update-index --add --cacheinfo "100644,$blob,$changed"
tree=$(git --git-dir="$work/src.git" write-tree)
commit=$(echo "one file" | git --git-dir="$work/src.git" commit-tree "$tree" -p HEAD)
git --git-dir="$work/src.git" update-ref HEAD "$commit"
unset GIT_INDEX_FILE

# Re-imports through the counting relays: time, wire bytes, and what the import says it moved.
jr=(); gf=(); jwire=(); gwire=(); jnodes=(); jnew=(); jbytes=()
for i in $(seq "$runs"); do
  before=$(counted "$work/jit.bytes")
  s=$(date +%s.%N)
  report=$("$jit" -C "$work/imp-$i" federation import "$universe" linux --from "tcp/127.0.0.1:$jrelay" --json)
  e=$(date +%s.%N)
  sleep 0.2
  jr+=("$(echo "$e - $s" | bc)")
  jwire+=("$(( $(counted "$work/jit.bytes") - before ))")
  jnodes+=("$(echo "$report" | python3 -c 'import json,sys; print(json.load(sys.stdin)["fetched_nodes"])')")
  jnew+=("$(echo "$report" | python3 -c 'import json,sys; print(json.load(sys.stdin)["new_nodes"])')")
  jbytes+=("$(echo "$report" | python3 -c 'import json,sys; print(json.load(sys.stdin)["fetched_bytes"])')")
  [ "$(echo "$report" | python3 -c 'import json,sys; print(json.load(sys.stdin)["epoch"])')" = 2 ] || { echo "jit re-import did not arrive" >&2; exit 1; }
  before=$(counted "$work/git.bytes")
  gf+=("$(seconds git --git-dir="$work/git-$i.git" fetch -q "git://127.0.0.1:$grelay/src.git" '+refs/heads/*:refs/heads/*')")
  sleep 0.2
  gwire+=("$(( $(counted "$work/git.bytes") - before ))")
done
[ "$(git --git-dir="$work/git-1.git" log -1 --format=%s)" = "one file" ] || { echo "git fetch did not arrive" >&2; exit 1; }

row() { # label jit-values git-values
  local label=$1 jm gm; shift
  local -n jv=$1 gv=$2
  jm=$(printf '%s\n' "${jv[@]}" | median); gm=$(printf '%s\n' "${gv[@]}" | median)
  printf '| %s | %.3f s (%s) | %.3f s (%s) | **%.3f×** |\n' "$label" "$jm" "$(printf '%.3f\n' "${jv[@]}" | minmax)" "$gm" "$(printf '%.3f\n' "${gv[@]}" | minmax)" "$(echo "$jm / $gm" | bc -l)"
}
files=$(find "$linux" -type f | wc -l)
jw=$(printf '%s\n' "${jwire[@]}" | median); gw=$(printf '%s\n' "${gwire[@]}" | median)
jb=$(printf '%s\n' "${jbytes[@]}" | median); jn=$(printf '%s\n' "${jnodes[@]}" | median)
jnw=$(printf '%s\n' "${jnew[@]}" | median)
echo "## Federation (\`bench/federation.sh\`, $runs runs each, median with min–max)"
echo
echo "Another universe imports a published snapshot of the Linux 6.1 tree ($files files) over loopback TCP: \`jit federation import\` (hello, verified head and log, signed manifest, verified transfer into the universe's own store, closure check, edge) from \`jit up --listen\` against \`git clone --bare\` from \`git daemon\` (the source repository packed). Then the publisher changes one file (\`$changed\`) and publishes a new epoch: the re-import against \`git fetch\`, each through a relay that counts the bytes on the wire both ways. $(git --version)."
echo
echo "| measure | jit | git | ratio jit/git |"
echo "|---|---|---|---|"
row "import of a published linux-6.1 snapshot (git: clone)" ji gc
row "re-import of a new epoch that changed one file (git: fetch)" jr gf
printf '| bytes on the wire for that re-import | %d | %d | %.2f× |\n' "$jw" "$gw" "$(echo "$jw / $gw" | bc -l)"
echo
echo "The re-import fetched $jn nodes ($jb bytes of node content), all of them new to the importer ($jnw new): only nodes it did not hold crossed. Bytes on the wire against the new nodes' bytes: **$(printf '%.2f' "$(echo "$jw / $jb" | bc -l)")×** (goal ≤ 1.1×); the rest is the handshake, the signed head and manifest, the fetch requests and Zenoh's session."
