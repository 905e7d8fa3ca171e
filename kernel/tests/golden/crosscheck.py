#!/usr/bin/env python3
"""Independent check of the golden vectors with other implementations: every checked-in node
must be canonical CBOR according to `cbor2` (canonical=True re-encodes it byte for byte) and its
id must be the BLAKE3 of its bytes according to the `blake3` package."""
import pathlib
import sys

import blake3
import cbor2

path = pathlib.Path(__file__).with_name("nodes.txt")
failures = 0
count = 0
for line in path.read_text().splitlines():
    name, node_id, hex_bytes = line.split()
    data = bytes.fromhex(hex_bytes)
    count += 1
    if cbor2.dumps(cbor2.loads(data), canonical=True) != data:
        print(f"{name}: not canonical according to cbor2")
        failures += 1
    if blake3.blake3(data).hexdigest() != node_id:
        print(f"{name}: id is not BLAKE3 of the bytes")
        failures += 1
print(f"golden cross-check: {count - failures} passed, {failures} failed")
sys.exit(1 if failures or count == 0 else 0)
