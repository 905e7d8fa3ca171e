"""Events: ``jit/log/since`` paging, live subscriptions, and a stream that backfills then goes
live with no duplicate and no gap."""

from __future__ import annotations

import queue

import pytest

from jit_agent import patch, put
from conftest import wait_for

pytestmark = pytest.mark.daemon


def contiguous(events, start):
    return [e["seq"] for e in events] == list(range(start, start + len(events)))


def test_events_since_pages_through_more_than_one_answer(up):
    a = up.new_agent("historian")
    start = a.log_tail() + 1
    sws = a.create()["id"]
    a.push_many(sws, [patch([put(f"e/{i}.txt", "x")], id=f"e{i}") for i in range(1100)], window=256)
    # Acknowledged means journaled; the log shows it within milliseconds.
    wait_for(lambda: a.log_tail() >= start + 1100, 10, what="the log to reach the pushes")
    events = a.events_since(start)
    assert len(events) > 1024, "more than one page"
    assert contiguous(events, start)
    assert events[-1]["seq"] == a.log_tail()
    patched = [e for e in events if e["op"]["op"] == "sws-patched"]
    assert len(patched) == 1100
    assert events[0]["op"]["op"] == "sws-created"
    for e in events:
        assert set(e) == {"seq", "prev", "at", "op", "by"}
        assert isinstance(e["prev"], bytes) and len(e["prev"]) == 32
        assert isinstance(e["at"], int)
        # `by` names the agent whose plane message the record is for.
        assert e["by"] == "historian", e
    # Records of the owner's own operations carry no `by`.
    assert a.events_since(1)[0]["by"] is None
    page = a.events_page(start)
    assert len(page["events"]) == 1024 and page["next"] == start + 1024
    assert page["tail"] == events[-1]["seq"]
    beyond = a.events_page(1 << 62)
    assert beyond["events"] == [] and beyond["tail"] == events[-1]["seq"]
    assert a.events_since(1 << 62) == []


def test_a_late_follower_gets_the_backlog_then_live_events_once_each(up):
    a = up.new_agent("writer")
    watcher = up.new_agent("watcher")
    start = a.log_tail() + 1
    sws = a.create()["id"]
    a.push_many(sws, [patch([put(f"b/{i}.txt", "x")], id=f"b{i}") for i in range(150)], window=64)
    wait_for(lambda: a.log_tail() >= start + 150, 10, what="the backlog in the log")

    stream = watcher.follow(start)
    try:
        seen = []
        backlog_end = watcher.log_tail()
        while not seen or seen[-1]["seq"] < backlog_end:
            seen.append(stream.next(timeout=15))
        assert len(seen) >= 151 and contiguous(seen, start)
        # Live ones now, interleaved with the stream being read.
        for i in range(40):
            a.push(sws, patch([put(f"l/{i}.txt", "y")], id=f"l{i}"))
        wait_for(lambda: watcher.log_tail() >= backlog_end + 40, 10, what="the live events")
        live_end = watcher.log_tail()
        while seen[-1]["seq"] < live_end:
            seen.append(stream.next(timeout=15))
        assert contiguous(seen, start), "no gap and no duplicate"
        ids = [e["op"].get("patch_id") for e in seen if e["op"]["op"] == "sws-patched"]
        # Every patch once (pushed 64 at a time, a request lost on the way lands when resent).
        assert sorted(ids[:150]) == sorted(f"b{i}" for i in range(150))
        assert ids[150:] == [f"l{i}" for i in range(40)], "pushed one at a time: in order"
        # Nothing more is pending: the next call times out rather than repeating one.
        with pytest.raises(TimeoutError):
            stream.next(timeout=0.5)
    finally:
        stream.close()


def test_a_subscription_and_a_callback_follower_receive_live_events(up):
    a = up.new_agent("pub")
    sws = a.create()["id"]
    start = a.log_tail() + 1
    got = queue.Queue()
    follower = a.follow(start, callback=got.put)
    subscription = a.subscribe()
    try:
        # The subscription receives live events once its route exists: push until one arrives.
        def one_live():
            a.push(sws, patch([put("probe.txt", "p")]))
            try:
                return subscription.get(timeout=0.5)
            except queue.Empty:
                return None

        first = wait_for(one_live, 20, interval=0, what="a live event")
        assert first["op"]["op"] == "sws-patched" and first["seq"] >= start
        for i in range(20):
            a.push(sws, patch([put(f"s/{i}.txt", "x")], id=f"s{i}"))
        wait_for(lambda: a.log_tail() >= first["seq"] + 20, 10, what="the log")
        end = a.log_tail()
        live = [first]
        while live[-1]["seq"] < end:
            live.append(subscription.get(timeout=10))
        assert [e["seq"] for e in live] == sorted({e["seq"] for e in live}), "in order, once"
        # The callback follower got everything from start on, without a gap.
        fed = []
        while not fed or fed[-1]["seq"] < end:
            fed.append(got.get(timeout=10))
        assert contiguous(fed, start)
    finally:
        follower.close()
        subscription.close()
