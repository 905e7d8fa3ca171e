"""The client's delivery rules with a scripted stand-in for the Zenoh session (no daemon): the
same bytes on every resend, go-back-N oldest first, the namespace outside the signature, and
no_ack after the retry budget."""

from __future__ import annotations

import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from jit_agent import Agent, NoAck, cbor
from jit_agent.envelope import signing_bytes


class Sample:
    def __init__(self, data):
        self.payload = type("Z", (), {"to_bytes": lambda _self: data})()


class Reply:
    def __init__(self, ok=None, err=None):
        self.ok = Sample(ok) if ok is not None else None
        self.err = Sample(err) if err is not None else None


class Handler:
    """One query's replies: a list consumed by recv(); an empty list is a closed channel."""

    def __init__(self, replies):
        self.replies = list(replies)

    def recv(self):
        if not self.replies:
            raise RuntimeError("channel closed")
        return self.replies.pop(0)


class FakeSession:
    """Answers every query `ok` with its number, except the attempts listed in `lose` (by the
    order queries were sent, from 0), which time out."""

    def __init__(self, lose=(), fail_everything=False):
        self.sent = []
        self.lose = set(lose)
        self.fail_everything = fail_everything

    def get(self, key, payload=None, timeout=None, congestion_control=None):
        attempt = len(self.sent)
        self.sent.append((key, bytes(payload)))
        if self.fail_everything:
            return Handler([])  # no route: the query ends at once without a reply
        if attempt in self.lose:
            return Handler([Reply(err=b"Timeout")])
        envelope = cbor.decode(payload)
        answer = {"status": "ok", "result": {"msg_id": envelope["msg_id"]}}
        return Handler([Reply(ok=cbor.encode(answer))])

    def close(self):
        pass


KEY = Ed25519PrivateKey.from_private_bytes(bytes([5]) * 32)


def test_a_lost_reply_resends_every_unanswered_message_oldest_first_with_the_same_bytes():
    session = FakeSession(lose={2})
    agent = Agent(session, "alice", KEY, namespace="tenant", attempt_timeout=0.01)
    writes = [(f"jit/sws/{'0' * 32}/patch", {"n": i}) for i in range(8)]
    results = agent.request_many(writes, window=4)
    ids = [r["msg_id"] for r in results]
    assert len(ids) == 8 and len(set(ids)) == 8, "one answer per message, in order"
    first_bytes = {}
    for key, data in session.sent:
        envelope = cbor.decode(data)
        first_bytes.setdefault(envelope["msg_id"], data)
        assert data == first_bytes[envelope["msg_id"]], "a resend carries the same bytes"
        assert key == f"tenant/jit/sws/{'0' * 32}/patch", "the namespace prefixes the key"
    order = [cbor.decode(data)["payload"]["n"] for _, data in session.sent]
    # 0..3 sent; 0 and 1 answered and 4, 5 sent; 2 times out: 2, 3, 4, 5 again, oldest first.
    assert order[:6] == [0, 1, 2, 3, 4, 5]
    assert order[6:10] == [2, 3, 4, 5]
    assert order[10:] == [6, 7]


def test_the_signature_covers_the_key_without_namespace_and_ts_rises():
    session = FakeSession()
    agent = Agent(session, "alice", KEY, namespace="tenant/")
    agent.request("jit/kernel/create", {})
    agent.request("jit/kernel/create", {"name": "x"})
    envelopes = [cbor.decode(data) for _, data in session.sent]
    for envelope in envelopes:
        KEY.public_key().verify(
            envelope["sig"],
            signing_bytes("jit/kernel/create", "alice", envelope["ts"], envelope["msg_id"], envelope["payload"]),
        )
        assert envelope["msg_id"] == f"alice-{envelope['ts']}"
    assert envelopes[1]["ts"] > envelopes[0]["ts"] >= time.time_ns() // 1000 - 10_000_000
    assert [key for key, _ in session.sent] == ["tenant/jit/kernel/create"] * 2


def test_no_route_backs_off_and_gives_up_with_no_ack_after_the_budget():
    session = FakeSession(fail_everything=True)
    agent = Agent(session, "alice", KEY, attempt_timeout=0.01, retry_for=1.0)
    started = time.monotonic()
    with pytest.raises(NoAck):
        agent.request("jit/kernel/create", {})
    elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 3.0
    # Backoff: 50 ms doubling to 1 s, so a handful of attempts, not thousands.
    assert 3 <= len(session.sent) <= 10
    assert len({data for _, data in session.sent}) == 1, "always the same bytes"


def test_the_window_is_capped_at_1024_in_flight():
    class Counting(FakeSession):
        def __init__(self):
            super().__init__()
            self.handlers = []

        def get(self, *args, **kwargs):
            handler = super().get(*args, **kwargs)
            self.handlers.append(handler)
            # Unanswered so far: sent minus consumed.
            self.peak = max(getattr(self, "peak", 0), sum(1 for h in self.handlers if h.replies))
            return handler

    session = Counting()
    agent = Agent(session, "alice", KEY)
    agent.request_many(((f"jit/sws/{'1' * 32}/status", {}) for _ in range(3000)), window=5000)
    assert session.peak == 1024
