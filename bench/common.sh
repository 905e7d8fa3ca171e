# Shared by the benchmark scripts: tools, the Linux tree, and statistics. Source it after setting
# $data (the benchmark data directory).

need() { command -v "$1" >/dev/null || { apt-get install -y -qq "$2" >/dev/null; }; }

# Extracts Debian's linux-source-6.1 into $data once; sets $linux.
prepare_linux() {
  linux="$data/linux-source-6.1"
  if [ ! -d "$linux" ]; then
    [ -f /usr/src/linux-source-6.1.tar.xz ] || apt-get install -y -qq linux-source-6.1 >/dev/null
    tar -C "$data" -xJf /usr/src/linux-source-6.1.tar.xz
  fi
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
minmax() { sort -n | awk 'NR==1{min=$1} {max=$1} END {printf "%s–%s", min, max}'; }
