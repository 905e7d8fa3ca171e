#!/usr/bin/env bash
# End-to-end benchmark of the message plane with the mount: a real `jit up` (mount + plane), an
# agent registered with `jit agent new`, and the `mount_e2e` example pushing one-file patches and
# reading each back through `<mount>/sws/<id>/`. Prints a Markdown section.
#
#   bench/plane-mount.sh [EDITS]     (default 1000)
set -euo pipefail
edits=${1:-1000}
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/bench/common.sh"
(cd "$here" && cargo build --release -q -p jit-plane --example mount_e2e >&2)
export JIT_AUTHOR="bench <b@x>" JIT_DATE="@1700000000"

work=$(mktemp -d /var/tmp/jit-plane-mount.XXXX)
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  umount -l "$work/mnt" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

"$jit" init "$work/u" >/dev/null
"$jit" -C "$work/u" agent new bench >/dev/null
"$jit" -C "$work/u" up --mount "$work/mnt" > "$work/up.log" 2>&1 &
pid=$!
for _ in $(seq 300); do
  grep -q socket: "$work/up.log" 2>/dev/null && mountpoint -q "$work/mnt" && break
  sleep 0.1
done
mountpoint -q "$work/mnt" || { cat "$work/up.log" >&2; echo "the mount did not come up" >&2; exit 1; }

echo "### Agent to mount, end to end (\`bench/plane-mount.sh\`)"
echo
echo "A real \`jit up\` with its mount and plane; one agent pushes $edits one-file patches over Zenoh, each read back through \`<mount>/sws/<id>/\` until the new content shows."
echo
echo "| measure | p50 / p99 | goal | ÷ goal |"
echo "|---|---|---|---|"
"$target/release/examples/mount_e2e" "$work/u/.jit" "$work/mnt" bench "$edits"
