#!/usr/bin/env bash
# Builds target/debian/jit_<version>_<arch>.deb with the binary, the systemd unit, shell
# completions and man pages (the last two generated from the CLI itself).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null || cargo install cargo-deb --locked
cargo build --profile dist -p jit-cli
bin="${CARGO_TARGET_DIR:-target}/dist/jit"
out=target/packaging
rm -rf "$out"
mkdir -p "$out/completions" "$out/man"
"$bin" completions bash > "$out/completions/jit.bash"
"$bin" completions zsh > "$out/completions/_jit"
"$bin" completions fish > "$out/completions/jit.fish"
"$bin" man "$out/man"
cargo deb -p jit-cli --no-build --profile dist --output target/debian/ >&2
ls -t target/debian/jit_*.deb | head -1
