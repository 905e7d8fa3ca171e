"""Reads of a revision's tree over the plane: ``jit/kernel/tree`` and ``jit/kernel/read``."""

from __future__ import annotations

import pytest

from jit_agent import PathNotFound, UnknownRevision, blob_id, mkdir, patch, put

pytestmark = pytest.mark.daemon


def test_tree_and_read_at_a_revision(up):
    a = up.new_agent("reader")
    sws = a.create()["id"]
    big = bytes(i % 256 for i in range(200_000))
    a.push(sws, patch([put("top.txt", "v1\n"), put("dir/inner.txt", "in\n"), put("dir/big.bin", big), mkdir("dir/empty")]))
    first = a.commit(sws, "R <r@x>", "one")
    sws = a.create()["id"]
    a.push(sws, patch([put("top.txt", "v2\n")]))
    head = a.commit(sws, "R <r@x>", "two")

    root = a.tree()
    assert [(e["name"], e["kind"]) for e in root["entries"]] == [("dir", "dir"), ("top.txt", "file")]
    assert root["snapshot"] == head["snapshot"].hex(), "the snapshot the revision named"
    assert a.tree("main~1")["snapshot"] == first["snapshot"].hex()
    inner = {e["name"]: e for e in a.tree("main", "dir")["entries"]}
    assert set(inner) == {"big.bin", "empty", "inner.txt"}
    assert inner["big.bin"].get("size") == 200_000
    assert a.read_at(None, "top.txt")["content"] == b"v2\n"
    assert a.read_at("main", "top.txt")["content"] == b"v2\n"
    old = a.read_at("main~1", "top.txt")
    assert old["content"] == b"v1\n" and old["snapshot"] == first["snapshot"].hex()
    assert old["blob"] == blob_id(b"v1\n").hex() and old["size"] == 3
    assert a.read_at(first["snapshot"].hex(), "top.txt")["content"] == b"v1\n"
    ranged = a.read_at("main", "dir/big.bin", offset=150_000, len=100)
    assert ranged["content"] == big[150_000:150_100] and ranged["size"] == 200_000
    with pytest.raises(PathNotFound):
        a.read_at("main", "nope.txt")
    with pytest.raises(UnknownRevision):
        a.tree("no-such-rev")
