# Shared by the benchmark scripts: the binary, the data directory, tools, the Linux tree, and
# statistics. Source it after setting $here (the workspace root).

# Cargo's target directory, the release binary (built if missing) and the benchmark data.
target=${CARGO_TARGET_DIR:-$here/target}
jit=${JIT_BIN:-$target/release/jit}
data=${JIT_BENCH_DIR:-/var/tmp/jit-bench}
linux="$data/linux-source-6.1"
mkdir -p "$data"
[ -x "$jit" ] || (cd "$here" && cargo build --release -p jit-cli >&2)

need() { command -v "$1" >/dev/null || { apt-get install -y -qq "$2" >/dev/null; }; }

# Extracts Debian's linux-source-6.1 into $data once; sets $linux.
prepare_linux() {
  if [ ! -d "$linux" ]; then
    [ -f /usr/src/linux-source-6.1.tar.xz ] || apt-get install -y -qq linux-source-6.1 >/dev/null
    tar -C "$data" -xJf /usr/src/linux-source-6.1.tar.xz
  fi
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
minmax() { sort -n | awk 'NR==1{min=$1} {max=$1} END {printf "%s–%s", min, max}'; }
