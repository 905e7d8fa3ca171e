"""Delivery: pipelined pushes (go-back-N), exactly-once across a ``kill -9`` of the daemon,
retries while the daemon is down, ``no_ack``, timestamps across client restarts, TCP."""

from __future__ import annotations

import threading
import time

import pytest

from jit_agent import Agent, JitError, NoAck, PatchRejected, delete, patch, put
from conftest import free_port, wait_for

pytestmark = pytest.mark.daemon


def test_push_many_pipelines_hundreds_of_patches_in_order(up):
    a = up.new_agent("piper")
    sws = a.create()["id"]
    n = 600
    patches = [patch([put(f"w/{i:03}.txt", f"{i}\n")], id=f"w{i}") for i in range(n)]
    seen = []
    answers = a.push_many(sws, patches, window=256, progress=seen.append)
    assert seen == list(range(1, n + 1)), "one answer per patch"
    assert sorted(r["seq"] for r in answers) == list(range(1, n + 1)), "each applied once"
    assert not any(r["duplicate"] for r in answers)
    # Answer i is patch i's: the history entry at its seq is that patch. (In the order sent,
    # unless Zenoh dropped a request on the way: then it lands when resent, after the others.)
    by_seq = {h["seq"]: h["patch_id"] for h in a.history(sws)}
    assert [by_seq[r["seq"]] for r in answers] == [f"w{i}" for i in range(n)]
    assert len(a.list(sws, "w")["entries"]) == n


def test_a_refused_patch_does_not_stop_those_behind_it(up):
    a = up.new_agent("mixed")
    sws = a.create()["id"]
    patches = [
        patch([put("a.txt", "a\n")], id="a"),
        patch([delete("missing.txt")], id="bad"),
        patch([put("b.txt", "b\n")], id="b"),
    ]
    results = a.push_many(sws, patches, window=8, raise_errors=False)
    assert results[0]["seq"] == 1 and results[2]["seq"] == 2
    assert isinstance(results[1], PatchRejected)
    with pytest.raises(PatchRejected) as caught:
        a.push_many(sws, [patch([delete("missing.txt")], id="bad2"), patch([put("c.txt", "c\n")], id="c")])
    assert caught.value.index == 0 and caught.value.results[1]["seq"] == 3
    assert [h["patch_id"] for h in a.history(sws)] == ["a", "b", "c"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "cadence",
    [
        {},
        # The daemon keeps its transaction open longer: acknowledged patches sit only in the
        # journal when it dies, and the next `jit up` delivers them again.
        {"JIT_PLANE_IDLE_MS": "200", "JIT_PLANE_MAX_OPEN_MS": "3000"},
    ],
    ids=["default-commits", "journal-only"],
)
def test_kill_9_mid_stream_applies_every_patch_exactly_once(universe, cadence):
    """2,000 patches to one SWS from a thread, 256 in flight; the daemon is killed with
    SIGKILL once some are acknowledged and started again; the client's retries (the same
    envelope bytes, go-back-N) finish the stream. Every patch is applied exactly once and the
    tree holds each file's last content."""
    up = universe
    up.up(env=cadence)
    a = up.new_agent("survivor", attempt_timeout=2.0, retry_for=120.0)
    sws = a.create()["id"]
    n, files = 2000, 200
    patches = [patch([put(f"k/{i % files:03}.txt", f"{i}\n")], id=f"k{i}") for i in range(n)]
    acked = [0]
    outcome = {}

    def stream():
        try:
            outcome["answers"] = a.push_many(
                sws, patches, window=256, progress=lambda count: acked.__setitem__(0, count)
            )
        except BaseException as error:  # reported below
            outcome["error"] = error

    sender = threading.Thread(target=stream, daemon=True)
    sender.start()
    wait_for(lambda: acked[0] >= 300, 60, interval=0.001, what="300 acknowledgements")
    up.daemon.kill9()
    at_kill = acked[0]
    assert at_kill < n, "killed mid-stream"
    up.up()
    sender.join(timeout=180)
    assert not sender.is_alive(), "push_many did not finish"
    assert "error" not in outcome, outcome.get("error")
    answers = outcome["answers"]
    assert len(answers) == n and all(isinstance(r, dict) for r in answers)

    history = a.history(sws)
    ids = [h["patch_id"] for h in history]
    assert len(ids) == n, f"{len(ids)} applied of {n}"
    assert sorted(ids) == sorted(f"k{i}" for i in range(n)), "each patch exactly once"
    assert [h["seq"] for h in history] == list(range(1, n + 1))
    # Each file holds what the last patch (in the order applied) wrote to it.
    last = {}
    for patch_id in ids:
        i = int(patch_id[1:])
        last[i % files] = i
    reads = a.request_many(
        ((f"jit/sws/{sws}/read", {"path": f"k/{f:03}.txt"}) for f in range(files)), window=64
    )
    assert [r["content"] for r in reads] == [f"{last[f]}\n".encode() for f in range(files)]
    # Answer i is patch i's (whatever order they landed in).
    by_seq = {h["seq"]: h["patch_id"] for h in history}
    assert [by_seq[r["seq"]] for r in answers] == [f"k{i}" for i in range(n)]
    # The CLI (over the RPC, another reader of the store) sees the same micro-history.
    logged = up.run("sws", "log", sws, json_out=True)
    assert [h["patch_id"] for h in logged] == ids


def test_a_write_sent_while_the_daemon_is_down_lands_once_it_is_back(up):
    a = up.new_agent("patient", attempt_timeout=1.0, retry_for=60.0)
    sws = a.create()["id"]
    up.daemon.kill9()
    outcome = {}

    def push():
        try:
            outcome["answer"] = a.push(sws, patch([put("late.txt", "late\n")], id="late"))
        except BaseException as error:
            outcome["error"] = error

    sender = threading.Thread(target=push, daemon=True)
    sender.start()
    time.sleep(1.5)  # the point of the test: the daemon stays down a while
    assert sender.is_alive(), "still retrying"
    up.up()
    sender.join(timeout=60)
    assert not sender.is_alive()
    assert outcome.get("answer", {}).get("seq") == 1, outcome
    assert [h["patch_id"] for h in a.history(sws)] == ["late"]


def test_no_ack_after_the_retry_budget(up):
    a = up.new_agent("abandoned", attempt_timeout=0.5, retry_for=2.0)
    sws = a.create()["id"]
    up.daemon.kill9()
    started = time.monotonic()
    with pytest.raises(NoAck) as caught:
        a.push(sws, patch([put("x.txt", "x\n")]))
    elapsed = time.monotonic() - started
    assert 2.0 <= elapsed < 10, elapsed
    assert caught.value.code == "no_ack" and isinstance(caught.value, JitError)


def test_timestamps_rise_strictly_and_survive_a_client_restart(up):
    first = up.new_agent("phoenix")
    stamps = [first.next_ts() for _ in range(10_000)]
    assert all(b > a for a, b in zip(stamps, stamps[1:]))
    assert stamps[0] >= (time.time_ns() // 1000) - 60_000_000, "microseconds since the epoch"
    sws = first.create()["id"]
    first.push(sws, patch([put("a.txt", "1\n")], id="one"))
    first.close()
    # A new client with the same key starts from the clock, above its previous life's ts.
    second = up.connect("phoenix")
    second.push(sws, patch([put("b.txt", "2\n")], id="two"))
    assert [h["patch_id"] for h in second.history(sws)] == ["one", "two"]


def test_threads_share_one_agent(up):
    a = up.new_agent("threads")
    sws = a.create()["id"]
    errors = []

    def worker(w):
        try:
            for i in range(25):
                a.push(sws, patch([put(f"t{w}/{i}.txt", "x\n")], id=f"t{w}-{i}"))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert len(a.history(sws)) == 100


def test_over_tcp_loopback(universe):
    port = free_port()
    universe.agent_new("tcp")
    universe.up(listen=[f"tcp/127.0.0.1:{port}"])
    a = Agent.connect("tcp", universe.dir / ".jit" / "agents" / "tcp.key", f"tcp/127.0.0.1:{port}")
    universe.agents.append(a)
    sws = a.create()["id"]
    answers = a.push_many(sws, [patch([put(f"{i}.txt", "x")]) for i in range(50)], window=16)
    assert [r["seq"] for r in answers] == list(range(1, 51))
