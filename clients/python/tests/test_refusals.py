"""The plane's refusals, provoked against a real daemon with the client's calls and with
crafted envelopes: each raises (or answers) its own code, applies nothing, and leaves an audit
record in the log."""

from __future__ import annotations

import pytest

import jit_agent
from jit_agent import (
    Agent,
    BadSignature,
    Envelope,
    Forbidden,
    JitError,
    Malformed,
    NotOwner,
    Replayed,
    Stale,
    TooLarge,
    UnknownAgent,
    UnknownTopic,
    Unsigned,
    error_for,
    generate_key,
    patch,
    put,
)

from conftest import wait_for

pytestmark = pytest.mark.daemon


def raises(answer, cls):
    """Asserts a raw answer is a refusal whose code maps to ``cls``."""
    assert answer is not None, "no answer"
    assert answer["status"] == "error", answer
    error = error_for(answer["error"]["code"], answer["error"]["message"])
    assert isinstance(error, cls), answer
    return error


def audited_codes(agent: Agent, since: int):
    return [e["op"].get("code") for e in agent.events_since(since) if e["op"]["op"] == "audit"]


def test_crafted_envelopes_get_their_own_codes_and_apply_nothing(up):
    carol = up.new_agent("carol")
    sws = carol.create()["id"]
    start = carol.log_tail() + 1
    topic = f"jit/sws/{sws}/patch"
    value = patch([put("x.txt", "x\n")], id="px")

    raises(carol.send_raw(topic, b"\xff\x13"), Malformed)
    good = carol.envelope(topic, value)
    unsigned = Envelope(topic, "carol", good.ts, good.msg_id, value, b"")
    raises(carol.send_raw(topic, unsigned.encode()), Unsigned)
    stranger = Envelope.signed(topic, "nobody", 1, "m1", value, generate_key())
    raises(carol.send_raw(topic, stranger.encode()), UnknownAgent)
    forged = Envelope.signed(topic, "carol", carol.next_ts(), "f1", value, generate_key())
    raises(carol.send_raw(topic, forged.encode()), BadSignature)
    huge = carol.envelope(topic, b"\0" * (4 * 1024 * 1024 + 1))
    raises(carol.send_raw(topic, huge.encode(), timeout=10), TooLarge)
    # A signature binds the key: a patch signed for one SWS is refused on another.
    other = carol.create()["id"]
    moved = carol.envelope(topic, value)
    raises(carol.send_raw(f"jit/sws/{other}/patch", moved.encode()), BadSignature)
    assert carol.status(sws)["patches"] == 0, "nothing applied so far"

    # A good message, its retry (the original answer, no second effect) and a replay.
    first = carol.send_raw(topic, good.encode())
    assert first["status"] == "ok", first
    again = carol.send_raw(topic, good.encode())
    assert again == first, "a retry gets the original answer"
    assert carol.status(sws)["patches"] == 1, "and no second effect"
    reused = Envelope.signed(
        topic, "carol", good.ts, good.msg_id, patch([put("y.txt", "y\n")], id="py"),
        up.dir / ".jit" / "agents" / "carol.key",
    )
    raises(carol.send_raw(topic, reused.encode()), Replayed)
    # A message older than the last delivered one but never delivered itself (a request lost
    # on the way, resent) is taken: it is above the sender's floor.
    late = Envelope.signed(
        topic, "carol", good.ts - 1, "older", patch([put("z.txt", "z\n")], id="pz"),
        up.dir / ".jit" / "agents" / "carol.key",
    )
    assert carol.send_raw(topic, late.encode())["status"] == "ok"
    assert [h["patch_id"] for h in carol.history(sws)] == ["px", "pz"]
    assert carol.read(sws, "z.txt")["content"] == b"z\n"
    with pytest.raises(jit_agent.PathNotFound):
        carol.read(sws, "y.txt")

    # Every refusal left an audit record (in the log within milliseconds: the daemon answers
    # once the effect is journaled, and commits the log a little later).
    expected = ["malformed", "unsigned", "unknown_agent", "bad_signature", "too_large", "replayed"]
    codes = wait_for(
        lambda: (lambda c: c if all(x in c for x in expected) else None)(audited_codes(carol, start)),
        10,
        what="the audit records",
    )
    assert codes.count("bad_signature") == 2, codes


def test_not_owner_unknown_topic_and_a_revoked_agent(up):
    owner = up.new_agent("owner")
    mallory = up.new_agent("mallory")
    sws = owner.create()["id"]
    owner.push(sws, patch([put("f.txt", "mine\n")]))
    with pytest.raises(NotOwner):
        mallory.push(sws, patch([put("f.txt", "yours\n")]))
    with pytest.raises(NotOwner):
        mallory.read(sws, "f.txt")
    with pytest.raises(NotOwner):
        mallory.commit(sws, "M <m@x>", "steal")
    with pytest.raises(NotOwner):
        mallory.discard(sws)
    # An owner field naming someone else is refused, not ignored.
    with pytest.raises(NotOwner):
        mallory.request("jit/kernel/create", {"owner": "owner"})
    with pytest.raises(UnknownTopic):
        owner.request("jit/kernel/frobnicate", {})
    with pytest.raises(UnknownTopic):
        owner.request(f"jit/sws/{sws}/frobnicate", {})
    assert owner.read(sws, "f.txt")["content"] == b"mine\n"
    # Delegation lets mallory write.
    up.run("sws", "delegate", sws, "mallory")
    mallory.push(sws, patch([put("g.txt", "delegated\n")]))
    assert owner.read(sws, "g.txt")["content"] == b"delegated\n"
    # Revoked: unknown_agent from now on.
    up.run("agent", "revoke", "mallory")
    with pytest.raises(UnknownAgent):
        mallory.push(sws, patch([put("h.txt", "after\n")]))
    with pytest.raises(UnknownAgent):
        mallory.create()


def test_an_unregistered_key_is_an_unknown_agent(up):
    ghost = up.connect("ghost", generate_key())
    with pytest.raises(UnknownAgent) as caught:
        ghost.create()
    assert caught.value.code == "unknown_agent"
    assert isinstance(caught.value, JitError)


def test_permissions_are_forbidden_when_missing(up):
    up.agent_new("reader", allow=["commit:other"])
    reader = up.connect("reader")
    with pytest.raises(Forbidden):
        reader.create()
    up.agent_new("writer", allow=["sws.create", "commit:other"])
    writer = up.connect("writer")
    sws = writer.create()["id"]
    writer.push(sws, patch([put("f.txt", "x\n")]))
    with pytest.raises(Forbidden):
        writer.commit(sws, "W <w@x>", "not allowed on main")


@pytest.mark.slow
def test_a_message_below_the_senders_floor_is_stale(up):
    """The kernel keeps answers for a sender's last 4,096 messages and drops older ones every
    1,024 deliveries; a message at or below the highest dropped ts that it does not remember
    is refused as stale. 5,200 deliveries raise the floor past the first ones."""
    dora = up.new_agent("dora")
    sws = dora.create()["id"]
    first_ts = dora.next_ts()  # below every ts sent from here on
    statuses = dora.request_many(((f"jit/sws/{sws}/status", {}) for _ in range(5200)), window=256)
    assert all(isinstance(s, dict) for s in statuses)
    old = Envelope.signed(
        f"jit/sws/{sws}/patch", "dora", first_ts, "from-the-past", patch([put("old.txt", "o\n")]),
        up.dir / ".jit" / "agents" / "dora.key",
    )
    raises(dora.send_raw(old.key, old.encode()), Stale)
    assert dora.status(sws)["patches"] == 0
    wait_for(lambda: "stale" in audited_codes(dora, 1), 10, what="the stale audit record")
