#!/usr/bin/env bash
# The Python client's numbers (clients/python): one patch's round trip (p50/p99) and pipelined
# throughput (256 in flight) over the daemon's Unix socket, TCP loopback and (JIT_BENCH_TLS=1)
# mutual TLS on loopback. Sets up a fresh universe with one agent and test certificates
# (clients/python/tests/tlscerts.py), starts `jit up --no-mount --listen tcp/127.0.0.1:PORT
# --listen tls/127.0.0.1:PORT2 --zenoh-config plane.json5`, runs bench/python_client.py once per
# transport, prints a Markdown table, and tears everything down (also on failure; then the
# daemon's log is printed).
#
# The TLS row is off by default: JIT_BENCH_TLS=1 adds it. Under this benchmark's sustained
# load the daemon has aborted in about one run in four inside Zenoh's TLS link ("memory
# allocation of 139324712854976 bytes failed" in rustls::Error::clone, from
# zenoh-link-tls's write_all): memory corruption that matches the upstream report that Zenoh
# 1.10.2's TLS link reads and writes one rustls stream from two tasks at once
# (eclipse-zenoh/zenoh#2557).
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
  status=$?
  if [ "$status" != 0 ] && [ -f "$work/daemon.log" ]; then
    echo "--- the daemon's log (first 60 lines, from the first error or panic):" >&2
    { grep -n -m1 -A59 -E 'panicked|ERROR|error' "$work/daemon.log" || tail -n 60 "$work/daemon.log"; } >&2
  fi
  if [ -n "$daemon" ] && kill -0 "$daemon" 2>/dev/null; then
    kill "$daemon" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$daemon" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$daemon" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { "$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=$(free_port)
tls=${JIT_BENCH_TLS:-0}
listen=(--listen "tcp/127.0.0.1:$port")
if [ "$tls" = 1 ]; then
  tls_port=$(free_port)
  "$python" "$here/clients/python/tests/tlscerts.py" "$work/certs"
  listen+=(--listen "tls/127.0.0.1:$tls_port" --zenoh-config "$work/certs/plane.json5")
fi
"$jit" init "$work/u" >/dev/null
"$jit" -C "$work/u" agent new bench >/dev/null
"$jit" -C "$work/u" up --no-mount "${listen[@]}" >"$work/daemon.log" 2>&1 &
daemon=$!
"$jit" -C "$work/u" wait --timeout 60 >/dev/null || { cat "$work/daemon.log" >&2; exit 1; }

key="$work/u/.jit/agents/bench.key"
echo "Python $("$python" -c 'import sys; print(sys.version.split()[0])'), eclipse-zenoh $("$python" -c 'import importlib.metadata as m; print(m.version("eclipse-zenoh"))'), $(nproc) cores; daemon $("$jit" --version)"
echo
"$python" "$here/bench/python_client.py" --endpoint "unixsock-stream/$work/u/.jit/zenoh.sock" \
  --name bench --key "$key" --label "Unix socket" --header "$@"
"$python" "$here/bench/python_client.py" --endpoint "tcp/127.0.0.1:$port" \
  --name bench --key "$key" --label "TCP loopback" "$@"
if [ "$tls" = 1 ]; then
  "$python" "$here/bench/python_client.py" --endpoint "tls/127.0.0.1:$tls_port" \
    --name bench --key "$key" --label "mutual TLS, loopback" --tls-root-ca "$work/certs/ca.pem" \
    --tls-cert "$work/certs/agent.pem" --tls-key "$work/certs/agent.key" "$@"
fi
