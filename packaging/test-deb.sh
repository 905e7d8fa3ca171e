#!/usr/bin/env bash
# Builds the Debian package, lists it, unpacks it into a fresh directory root with `dpkg -x`, and
# checks that the binary runs and the unit, completions and man pages are in place.
set -euo pipefail
cd "$(dirname "$0")/.."
deb=$(packaging/build-deb.sh)
echo "package: $deb"
dpkg-deb --info "$deb" | sed -n 's/^ \(Package\|Version\|Architecture\|Depends\):/  \1:/p'
dpkg-deb --contents "$deb"
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
dpkg -x "$deb" "$root"
fail=0
check() { if [ -e "$root/$1" ]; then echo "ok      /$1"; else echo "MISSING /$1"; fail=1; fi; }
check usr/bin/jit
check lib/systemd/system/jit@.service
check usr/share/bash-completion/completions/jit
check usr/share/zsh/vendor-completions/_jit
check usr/share/fish/vendor_completions.d/jit.fish
man_dir=usr/share/man/man1
for page in jit jit-up jit-import jit-sws jit-sws-commit jit-import-git; do
  if [ -e "$root/$man_dir/$page.1.gz" ] || [ -e "$root/$man_dir/$page.1" ]; then echo "ok      /$man_dir/$page.1*"; else echo "MISSING /$man_dir/$page.1"; fail=1; fi
done
"$root/usr/bin/jit" --version
"$root/usr/bin/jit" up --help >/dev/null
if command -v systemd-analyze >/dev/null; then
  unit_dir=$(mktemp -d)
  instance="jit@$(systemd-escape --path /srv/demo).service"
  cp "$root/lib/systemd/system/jit@.service" "$unit_dir/$instance"
  sed -i "s|/usr/bin/jit|$root/usr/bin/jit|" "$unit_dir/$instance"
  verdict=$(systemd-analyze verify "$unit_dir/$instance" 2>&1 || true)
  rm -rf "$unit_dir"
  echo "systemd-analyze verify $instance: ${verdict:-clean}"
  if echo "$verdict" | grep -qi "bad unit file\|fatal\|failed to resolve"; then fail=1; fi
fi
[ $fail -eq 0 ] || { echo "the package is incomplete" >&2; exit 1; }
echo "package checks: all in place"
