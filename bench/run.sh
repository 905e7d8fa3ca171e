#!/usr/bin/env bash
# The one benchmark command: prepares the data (Debian's linux-source-6.1, a 1 GiB file), builds
# the release binary, runs every comparison in one run and rewrites BENCHMARKS.md with the
# machine, the medians, the spread and the ratios. Not part of the test suite.
#
#   bench/run.sh [IMPORT_RUNS] [SWS_RUNS] [WATCHER_RUNS] [MOUNT_RUNS] [SYNC_RUNS] [FEDERATION_RUNS]
#                                                          (defaults 3, 30, 20, 5, 3 and 3)
#   JIT_BASELINE=/path/to/older/jit adds bench/storage-hot.sh (hot reads before and after #21).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p jit-cli >&2
# The import writes gigabytes that the kernel keeps flushing long after; latency measures that
# start meanwhile time the disk's backlog, not JIT. Each section starts on a quiet disk.
quiet() { sync; sleep 2; }
out=$(mktemp)
{
  cat bench/header.md
  bench/import.sh "${1:-3}"
  echo
  cat bench/notes/import.md
  echo
  quiet
  bench/sws.sh "${2:-30}"
  echo
  cat bench/notes/sws.md
  echo
  quiet
  cargo run --release -q -p jit-plane --example bench 2>/dev/null
  echo
  quiet
  bench/plane-mount.sh
  echo
  cat bench/notes/plane.md
  echo
  quiet
  bench/watcher.sh "${3:-20}"
  echo
  cat bench/notes/watcher.md
  echo
  quiet
  bench/mount.sh "${4:-5}"
  echo
  cat bench/notes/mount.md
  echo
  quiet
  bench/sync.sh "${5:-3}"
  echo
  cat bench/notes/sync.md
  echo
  quiet
  bench/federation.sh "${6:-3}"
  echo
  cat bench/notes/federation.md
  echo
  quiet
  bench/bundle.sh "${6:-3}"
  echo
  cargo run --release -q -p jit-proto --example merkle_bench
  echo
  cargo run --release -q -p jit-plane --example gossip_bench 5 2>/dev/null
  echo
  quiet
  bench/log.sh
  echo
  bench/agents.sh
  echo
  bench/storage.sh
  echo
  cat bench/notes/storage.md
  if [ -n "${JIT_BASELINE:-}" ]; then   # a jit built before #21: hot reads, before and after
    echo
    quiet
    bench/storage-hot.sh "$JIT_BASELINE"
  fi
} > "$out"
mv "$out" BENCHMARKS.md
echo "wrote BENCHMARKS.md" >&2
