"""An agent's SWS operations against a real daemon: create, reads, pushes, edits, commit,
discard, and the kernel's refusals of bad writes."""

from __future__ import annotations

import pytest

from jit_agent import (
    BadPath,
    InvalidInput,
    MergeConflict,
    PatchRejected,
    PathNotFound,
    RefNotFound,
    SwsNotFound,
    blob_id,
    chmod,
    delete,
    edit,
    hunk,
    mkdir,
    patch,
    put,
    rename,
    rmdir,
    symlink,
)

pytestmark = pytest.mark.daemon

AUTHOR = "Agent <agent@example.org>"


def test_create_push_read_list_diff_history_and_commit(up):
    alice = up.new_agent("alice")
    status = alice.create()
    sws = status["id"]
    assert len(sws) == 32 and int(sws, 16) >= 0
    assert status["owner"] == "alice" and status["branch"] == "main"
    assert status["patches"] == 0 and status["changes"] == []

    big = bytes((i * 7) % 251 for i in range(300_000))
    first = alice.push(
        sws,
        patch([put("small.txt", "hello\nworld\n"), put("big.bin", big), mkdir("empty")], id="p1"),
    )
    assert first["seq"] == 1 and first["duplicate"] is False and len(first["tree"]) == 32

    small = alice.read(sws, "small.txt")
    assert small["content"] == b"hello\nworld\n"
    assert small["size"] == 12 and small["kind"] == "file" and small["offset"] == 0
    assert bytes.fromhex(small["blob"]) == blob_id(b"hello\nworld\n"), "the id an edit's base needs"
    ranged = alice.read(sws, "big.bin", offset=100_000, len=50)
    assert ranged["content"] == big[100_000:100_050]
    assert ranged["size"] == 300_000 and ranged["offset"] == 100_000

    listed = alice.list(sws)
    assert [(e["name"], e["kind"], e.get("size")) for e in listed["entries"]] == [
        ("big.bin", "file", 300_000),
        ("empty", "dir", None),
        ("small.txt", "file", 12),
    ]
    assert alice.list(sws, "empty") == {"entries": []}

    changes = {(d["path"], d["change"], d["kind"]) for d in alice.diff(sws)}
    assert changes == {("big.bin", "A", "file"), ("empty", "A", "dir"), ("small.txt", "A", "file")}

    # An edit against the blob the read answered; each inserted line carries its own "\n".
    second = alice.push(
        sws, patch([edit("small.txt", small["blob"], [hunk(1, 1, ["there", "again"])])], id="p2")
    )
    assert second["seq"] == 2
    assert alice.read(sws, "small.txt")["content"] == b"hello\nthere\nagain\n"

    history = alice.history(sws)
    assert [(h["seq"], h["patch_id"]) for h in history] == [(1, "p1"), (2, "p2")]

    status = alice.status(sws)
    assert status["patches"] == 2 and len(status["changes"]) == 3
    assert alice.analyze(sws) == []

    done = alice.commit(sws, AUTHOR, "from the python client", time=1_700_000_000, tz=60)
    assert len(done["snapshot"]) == 32
    # The branch moved: the CLI reads the committed content back.
    assert up.run("cat", "main:small.txt").stdout == "hello\nthere\nagain\n"
    shown = up.run("log", "main").stdout
    assert "from the python client" in shown
    assert done["snapshot"].hex()[:12] in shown or done["snapshot"].hex() in shown


def test_every_patch_op(up):
    a = up.new_agent("ops")
    sws = a.create(name="ops-sws")["id"]
    assert a.status(sws)["name"] == "ops-sws"
    a.push(sws, patch([put("a.txt", "a\n"), put("run.sh", "#!/bin/sh\n", executable=True)]))
    a.push(sws, patch([rename("a.txt", "dir/b.txt"), symlink("link", "dir/b.txt")]))
    a.push(sws, patch([chmod("run.sh", False), mkdir("gone"), rmdir("gone")]))
    a.push(sws, patch([put("x.txt", "x"), delete("x.txt")]))
    # put-blob reuses a blob already in this SWS by its id.
    blob = a.read(sws, "dir/b.txt")["blob"]
    from jit_agent import put_blob

    a.push(sws, patch([put_blob("copy.txt", blob, executable=True)]))
    entries = {e["name"]: e for e in a.list(sws)["entries"]}
    assert set(entries) == {"copy.txt", "dir", "link", "run.sh"}
    assert entries["link"]["kind"] == "symlink"
    assert entries["run.sh"]["kind"] == "file", "chmod cleared the bit"
    assert entries["copy.txt"]["kind"] == "exec"
    assert a.read(sws, "copy.txt")["content"] == b"a\n"
    assert [e["name"] for e in a.list(sws, "dir")["entries"]] == ["b.txt"]


def test_a_repeated_patch_id_is_applied_once(up):
    a = up.new_agent("dup")
    sws = a.create()["id"]
    first = a.push(sws, patch([put("f.txt", "1\n")], id="same"))
    again = a.push(sws, patch([put("f.txt", "1\n")], id="same"))
    assert first["duplicate"] is False and again["duplicate"] is True
    assert len(a.history(sws)) == 1


def test_discard_and_create_from_a_revision_and_branch(up):
    a = up.new_agent("disc")
    sws = a.create()["id"]
    a.push(sws, patch([put("f.txt", "1\n")]))
    a.commit(sws, AUTHOR, "one")
    up.run("branch", "side")
    other = a.create(branch="side", from_="main")
    assert other["branch"] == "side"
    a.discard(other["id"])
    with pytest.raises(SwsNotFound):
        a.status(other["id"])
    with pytest.raises(RefNotFound):
        a.create(branch="no-such-branch")
    with pytest.raises(InvalidInput):
        a.request("jit/kernel/create", {"colour": "red"})


def test_kernel_refusals_are_typed(up):
    a = up.new_agent("refused")
    sws = a.create()["id"]
    a.push(sws, patch([put("f.txt", "one\ntwo\n")]))
    for bad in [".jit/x", "../x", "/abs", "a//b", ".git/config"]:
        with pytest.raises(BadPath):
            a.push(sws, patch([put(bad, "x")]))
    with pytest.raises(PatchRejected):
        a.push(sws, patch([delete("nope.txt")]))
    # An edit against a base that is not the file's content.
    with pytest.raises(PatchRejected):
        a.push(sws, patch([edit("f.txt", blob_id(b"other\n"), [hunk(0, 1, "x")])]))
    # Hunks past the end of the file: the patch is refused as a whole (patch_rejected).
    with pytest.raises(PatchRejected, match="bad hunk"):
        a.push(sws, patch([edit("f.txt", blob_id(b"one\ntwo\n"), [hunk(5, 1, "x")])]))
    with pytest.raises(PathNotFound):
        a.read(sws, "nope.txt")
    # Nothing refused was applied.
    assert len(a.history(sws)) == 1
    assert a.read(sws, "f.txt")["content"] == b"one\ntwo\n"


def test_a_conflicting_commit_raises_merge_conflict_with_its_conflicts(up):
    a = up.new_agent("merger")
    first = a.create()["id"]
    second = a.create()["id"]
    a.push(first, patch([put("c.txt", "one\n")]))
    a.push(second, patch([put("c.txt", "two\n")]))
    assert a.analyze(second) == [], "nothing to conflict with yet"
    a.commit(first, AUTHOR, "first")
    assert [c["path"] for c in a.analyze(second)] == ["c.txt"], "analyze foresees it"
    with pytest.raises(MergeConflict) as caught:
        a.commit(second, AUTHOR, "second")
    conflicts = caught.value.conflicts
    assert [(c["path"], c["kind"]) for c in conflicts] == [("c.txt", "add-add")]
    # The SWS shows them.
    assert [c["path"] for c in a.status(second)["conflicts"]] == ["c.txt"]
