#!/usr/bin/env bash
# Installs the Python client with its test extra and runs its pytest suite against a real
# daemon. The daemon binary is $JIT_BIN if set, else <repo>/target/debug/jit, else `jit` on
# PATH (see tests/conftest.py). Extra arguments go to pytest, e.g. `-k kill -x`.
#
#   JIT_BIN=target/release/jit clients/python/run-tests.sh
#
# Set JIT_PY_VENV=DIR to install into (and reuse) a virtualenv there instead of the current
# Python environment.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
python="${PYTHON:-python3}"

if [[ -n "${JIT_BIN:-}" ]]; then
    # Absolute, so the tests find it whatever their working directory.
    if [[ "$JIT_BIN" != /* && -e "$JIT_BIN" ]]; then
        JIT_BIN="$(cd "$(dirname "$JIT_BIN")" && pwd)/$(basename "$JIT_BIN")"
    fi
    export JIT_BIN
elif [[ -x "$repo/target/debug/jit" ]]; then
    export JIT_BIN="$repo/target/debug/jit"
fi
echo "python client tests: jit binary ${JIT_BIN:-jit on PATH}" >&2

if [[ -n "${JIT_PY_VENV:-}" ]]; then
    [[ -x "$JIT_PY_VENV/bin/python" ]] || "$python" -m venv "$JIT_PY_VENV"
    python="$JIT_PY_VENV/bin/python"
fi

"$python" -m pip install --quiet --disable-pip-version-check "$here[test]"
# Run from the tests' directory against the installed package, not the source tree.
cd "$here/tests"
exec "$python" -m pytest -p no:cacheprovider -q "$@" .
