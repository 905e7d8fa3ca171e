"""Enrolment: a key made anywhere asks to join (``jit/agent/enrol``), the owner approves or
denies it with the CLI, and the client's poll learns the outcome."""

from __future__ import annotations

import threading

import pytest

from jit_agent import (
    Agent,
    BadSignature,
    Envelope,
    EnrolmentDenied,
    Forbidden,
    Malformed,
    NameTaken,
    NotApproved,
    RateLimited,
    UnknownAgent,
    error_for,
    generate_key,
    patch,
    public_key_bytes,
    public_key_hex,
    put,
)
from conftest import has_subcommand

pytestmark = pytest.mark.daemon


@pytest.fixture
def enrolling(up, jit_bin):
    assert has_subcommand(jit_bin, "agent", "pending"), f"{jit_bin} has no enrolment (jit agent pending)"
    return up


def refusal(answer):
    """A raw refusal answer as its typed error."""
    assert answer is not None and answer["status"] == "error", answer
    return error_for(answer["error"]["code"], answer["error"]["message"])


def pending(u):
    """``jit agent pending --json``: name → its row."""
    return {row["agent"]: row for row in u.run("agent", "pending", json_out=True)}


def pending_names(u):
    return list(pending(u))


def test_a_request_is_pending_until_approved_then_the_agent_works(enrolling):
    u = enrolling
    key = generate_key()
    bot = Agent.enrol("bot", key, u.endpoint, permissions=["sws.create", "commit:*"], note="a test bot")
    u.agents.append(bot)
    assert bot.enrolment["state"] == "pending"
    assert bot.enrolment["name"] == "bot"
    assert bot.enrolment["public_key"] == public_key_hex(key)
    assert not bot.approved
    row = pending(u)["bot"]
    assert row["public_key"] == public_key_hex(key)
    assert row["permissions"] == ["sws.create", "commit:*"] and row["note"] == "a test bot"
    text = u.run("agent", "pending").stdout
    assert "bot" in text and public_key_hex(key) in text
    # Asking again is idempotent.
    assert bot.request_enrolment()["state"] == "pending"
    assert pending_names(u).count("bot") == 1
    # Not registered yet.
    with pytest.raises(UnknownAgent):
        bot.create()
    # The owner approves while the client polls.
    outcome = {}

    def wait():
        try:
            outcome["answer"] = bot.wait_until_approved(timeout=30)
        except BaseException as error:
            outcome["error"] = error

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    u.run("agent", "approve", "bot")
    waiter.join(timeout=60)
    assert not waiter.is_alive()
    assert outcome.get("answer", {}).get("state") == "approved", outcome
    assert bot.approved
    assert "bot" not in pending_names(u)
    registered = {a["agent"]: a for a in u.run("agent", "ls", json_out=True)}
    assert registered["bot"]["public_key"] == public_key_hex(key)
    # It can create an SWS, push and commit.
    sws = bot.create()["id"]
    bot.push(sws, patch([put("from-bot.txt", "hello\n")]))
    bot.commit(sws, "Bot <bot@example.org>", "enrolled")
    assert u.run("cat", "main:from-bot.txt").stdout == "hello\n"
    # Asking again after approval says approved.
    assert bot.request_enrolment()["state"] == "approved"


def test_a_denied_request_never_registers(enrolling):
    u = enrolling
    intruder = Agent.enrol("intruder", generate_key(), u.endpoint, note="let me in")
    u.agents.append(intruder)
    assert "intruder" in pending_names(u)
    u.run("agent", "deny", "intruder")
    assert "intruder" not in pending_names(u)
    with pytest.raises(UnknownAgent):
        intruder.create()
    assert "intruder" not in {a["agent"] for a in u.run("agent", "ls", json_out=True)}
    # The denied key asking again learns it was denied, and is not queued again.
    with pytest.raises(EnrolmentDenied):
        intruder.wait_until_approved(timeout=5.0)
    assert "intruder" not in pending_names(u)
    # Another key may ask for the name.
    other = Agent.enrol("intruder", generate_key(), u.endpoint)
    u.agents.append(other)
    assert "intruder" in pending_names(u)


def test_a_name_held_or_asked_for_by_another_key_is_taken(enrolling):
    u = enrolling
    u.agent_new("alice")
    with pytest.raises(NameTaken):
        Agent.enrol("alice", generate_key(), u.endpoint)
    first = Agent.enrol("carol", generate_key(), u.endpoint)
    u.agents.append(first)
    with pytest.raises(NameTaken):
        Agent.enrol("carol", generate_key(), u.endpoint)
    assert pending_names(u).count("carol") == 1


def test_proof_of_possession_and_a_malformed_request(enrolling):
    u = enrolling
    probe = u.connect("probe", generate_key())
    owner_key, other_key = generate_key(), generate_key()
    # Signed by a key other than the one asked for.
    forged = Envelope.signed(
        "jit/agent/enrol", "dave", probe.next_ts(), "e1", {"public_key": public_key_bytes(owner_key)}, other_key
    )
    assert isinstance(refusal(probe.send_raw("jit/agent/enrol", forged.encode())), BadSignature)
    bad = Envelope.signed("jit/agent/enrol", "dave", probe.next_ts(), "e2", {"public_key": b"short"}, owner_key)
    assert isinstance(refusal(probe.send_raw("jit/agent/enrol", bad.encode())), Malformed)
    unknown = Envelope.signed(
        "jit/agent/enrol", "dave", probe.next_ts(), "e3",
        {"public_key": public_key_bytes(owner_key), "permissions": ["root"]}, owner_key,
    )
    assert isinstance(refusal(probe.send_raw("jit/agent/enrol", unknown.encode())), Malformed)
    assert "dave" not in pending_names(u)


def test_too_many_pending_requests_are_rate_limited(enrolling):
    u = enrolling
    probe = u.connect("probe", generate_key())
    refused = None
    for i in range(2000):
        key = generate_key()
        envelope = Envelope.signed(
            "jit/agent/enrol", f"flood{i}", probe.next_ts(), f"flood{i}",
            {"public_key": public_key_bytes(key)}, key,
        )
        answer = probe.send_raw("jit/agent/enrol", envelope.encode())
        assert answer is not None
        if answer["status"] == "error":
            refused = refusal(answer)
            break
        assert answer["result"]["state"] == "pending"
    assert isinstance(refused, RateLimited), f"no rate limit after {i + 1} pending requests ({refused})"
    assert len(pending_names(u)) == i


def test_the_owner_grants_what_was_asked_or_what_they_allow(enrolling):
    u = enrolling
    narrow = Agent.enrol("narrow", generate_key(), u.endpoint, permissions=["sws.create"])
    u.agents.append(narrow)
    u.run("agent", "approve", "narrow")
    assert narrow.wait_until_approved(timeout=10)["state"] == "approved"
    sws = narrow.create()["id"]
    narrow.push(sws, patch([put("n.txt", "n\n")]))
    with pytest.raises(Forbidden):
        narrow.commit(sws, "N <n@x>", "asked for no commit permission")
    wide = Agent.enrol("wide", generate_key(), u.endpoint, permissions=["sws.create"])
    u.agents.append(wide)
    u.run("agent", "approve", "wide", "--allow", "sws.create", "--allow", "commit:main")
    wide.wait_until_approved(timeout=10)
    sws = wide.create()["id"]
    wide.push(sws, patch([put("w.txt", "w\n")]))
    assert len(wide.commit(sws, "W <w@x>", "allowed by the owner")["snapshot"]) == 32
    registered = {a["agent"]: a for a in u.run("agent", "ls", json_out=True)}
    assert registered["narrow"]["permissions"] == ["sws.create"]
    assert registered["wide"]["permissions"] == ["sws.create", "commit:main"]
