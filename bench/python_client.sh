#!/usr/bin/env bash
# The Python client's numbers (clients/python): one patch's round trip (p50/p99) and pipelined
# throughput (256 in flight) over the daemon's Unix socket and over TCP loopback. Sets up a
# fresh universe with one agent, starts `jit up --no-mount --listen tcp/127.0.0.1:PORT`, runs
# bench/python_client.py once per transport, prints a Markdown table, and tears everything
# down (also on failure).
#
#   JIT_BIN=target/release/jit bench/python_client.sh [extra python_client.py options]
#
# e.g. `--round-trips 2000 --patches 20000 --runs 5`. The daemon binary is $JIT_BIN, else
# target/release/jit (built beforehand: this script does not build). The jit_agent package is
# installed from clients/python if Python cannot import it.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
jit=${JIT_BIN:-${CARGO_TARGET_DIR:-$here/target}/release/jit}
python=${PYTHON:-python3}
[ -x "$jit" ] || { echo "no jit binary at $jit (set JIT_BIN or build it)" >&2; exit 1; }
"$python" -c 'import jit_agent' 2>/dev/null ||
  "$python" -m pip install --quiet --disable-pip-version-check "$here/clients/python" >&2

work=$(mktemp -d "${TMPDIR:-/tmp}/jit-python-bench.XXXX")
daemon=
cleanup() {
  if [ -n "$daemon" ] && kill -0 "$daemon" 2>/dev/null; then
    kill "$daemon" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$daemon" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$daemon" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

port=$("$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$jit" init "$work/u" >/dev/null
"$jit" -C "$work/u" agent new bench >/dev/null
"$jit" -C "$work/u" up --no-mount --listen "tcp/127.0.0.1:$port" >"$work/daemon.log" 2>&1 &
daemon=$!
"$jit" -C "$work/u" wait --timeout 60 >/dev/null || { cat "$work/daemon.log" >&2; exit 1; }

key="$work/u/.jit/agents/bench.key"
echo "Python $("$python" -c 'import sys; print(sys.version.split()[0])'), eclipse-zenoh $("$python" -c 'import importlib.metadata as m; print(m.version("eclipse-zenoh"))'), $(nproc) cores; daemon $("$jit" --version)"
echo
"$python" "$here/bench/python_client.py" --endpoint "unixsock-stream/$work/u/.jit/zenoh.sock" \
  --name bench --key "$key" --label "Unix socket" --header "$@"
"$python" "$here/bench/python_client.py" --endpoint "tcp/127.0.0.1:$port" \
  --name bench --key "$key" --label "TCP loopback" "$@"
