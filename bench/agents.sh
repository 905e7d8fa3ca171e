#!/usr/bin/env bash
# The Python client (clients/python) beside the Rust agent library, against one real daemon
# (`jit up`), over the Unix socket and over TLS with client certificates on loopback (issue
# #23): one small patch's round trip (send → durable → acknowledged; p50/p99 over 1,000) and
# acknowledged patches per second with 256 in flight (10,000 patches, median of 3 runs).
# Prints a Markdown section. Needs openssl (for the test certificates) and python3.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
source "$here/bench/common.sh"
(cd "$here" && cargo build --release -q -p jit-plane --example agent_bench)
rust_agent="$target/release/examples/agent_bench"
python=${PYTHON:-python3}
"$python" -c 'import jit_agent' 2>/dev/null ||
  "$python" -m pip install --quiet --disable-pip-version-check "$here/clients/python" >&2

work=$(mktemp -d "${TMPDIR:-/tmp}/jit-agents-bench.XXXX")
daemon=
cleanup() {
  if [ -n "$daemon" ]; then kill "$daemon" 2>/dev/null || true; wait "$daemon" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# A CA, the daemon's certificate (for 127.0.0.1) and a client certificate.
cd "$work"
issue() { # name, CN, subjectAltName
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$1.key" \
    -out "$1.csr" -subj "/CN=$2" 2>/dev/null
  printf 'subjectAltName=%s\n' "$3" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -out "$1.pem" \
    -days 2 -extfile "$1.ext" 2>/dev/null
}
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key \
  -out ca.pem -days 2 -subj "/CN=bench CA" 2>/dev/null
issue daemon localhost "IP:127.0.0.1"
issue client bench-agents "DNS:bench-agents"
cat > daemon.json5 <<JSON
{ transport: { link: { tls: { root_ca_certificate: "$work/ca.pem",
  listen_certificate: "$work/daemon.pem", listen_private_key: "$work/daemon.key", enable_mtls: true } } } }
JSON
cat > client.json5 <<JSON
{ transport: { link: { tls: { root_ca_certificate: "$work/ca.pem",
  connect_certificate: "$work/client.pem", connect_private_key: "$work/client.key", enable_mtls: true } } } }
JSON

port=$("$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$jit" init "$work/u" >/dev/null
"$jit" -C "$work/u" agent new rust >/dev/null
"$jit" -C "$work/u" agent new py >/dev/null
"$jit" -C "$work/u" up --no-mount --listen "tls/127.0.0.1:$port" --zenoh-config "$work/daemon.json5" \
  >"$work/daemon.log" 2>&1 &
daemon=$!
"$jit" -C "$work/u" wait --timeout 60 >/dev/null || { cat "$work/daemon.log" >&2; exit 1; }

unix="unixsock-stream/$work/u/.jit/zenoh.sock"
tls="tls/127.0.0.1:$port"
row() { # transport label, client, p50, p99, rate
  printf '| %s | %s | %.2f ms | %.2f ms | %s |\n' "$1" "$2" "$3" "$4" "$5"
}
rust_runs() { # endpoint, config
  for _ in 1 2 3; do "$rust_agent" "$1" rust "$work/u/.jit/agents/rust.key" "$2" 1000 10000; done
}
echo "## Agents: the Python client beside the Rust library (\`bench/agents.sh\`)"
echo
echo "One daemon (\`jit up --no-mount\`), one agent at a time; a patch puts 16 bytes into one of 64 files. Round trip: one patch sent and acknowledged (durable), 1,000 in a row after 50 warm-up; throughput: 10,000 patches with 256 in flight, median of 3 runs (min–max). TLS: mutual TLS on loopback (client certificate required), the daemon's \`--zenoh-config\`. $(nproc) cores; Python $("$python" -c 'import sys; print(sys.version.split()[0])'), eclipse-zenoh $("$python" -c 'import importlib.metadata as m; print(m.version("eclipse-zenoh"))')."
echo
echo "| transport | client | round trip p50 | p99 | patches/s, 256 in flight |"
echo "|---|---|---|---|---|"
for transport in unix tls; do
  if [ "$transport" = unix ]; then endpoint=$unix; config=""; label="Unix socket";
  else endpoint=$tls; config="$work/client.json5"; label="TLS, loopback"; fi
  rust_runs "$endpoint" "$config" > rust.jsonl
  "$python" - rust.jsonl "$label" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
rates = sorted(r["pipelined_per_s"] for r in rows)
p50 = statistics.median(r["p50_ms"] for r in rows)
p99 = statistics.median(r["p99_ms"] for r in rows)
print(f"| {sys.argv[2]} | Rust (`jit_plane::agent`) | {p50:.2f} ms | {p99:.2f} ms | {statistics.median(rates):,.0f} ({rates[0]:,.0f}–{rates[-1]:,.0f}) |")
PY
  tls_args=()
  [ "$transport" = tls ] && tls_args=(--tls-root-ca "$work/ca.pem" --tls-cert "$work/client.pem" --tls-key "$work/client.key")
  "$python" "$here/bench/python_client.py" --endpoint "$endpoint" --name py \
    --key "$work/u/.jit/agents/py.key" --json --round-trips 1000 --patches 10000 --runs 3 \
    "${tls_args[@]}" > py.json
  "$python" - py.json "$label" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
rates = sorted(r["rates"])
print(f"| {sys.argv[2]} | Python (`jit_agent`) | {r['p50_ms']:.2f} ms | {r['p99_ms']:.2f} ms | {r['median_rate']:,.0f} ({rates[0]:,.0f}–{rates[-1]:,.0f}) |")
PY
done
