"""The kernel's events: decoding log records, live subscriptions, and a gap-free stream.

Every publication on ``jit/kernel/events`` is one log record's canonical CBOR body
``{seq, prev, at, op, by?}``; :func:`decode_event` turns it into a dict with those keys
(``by``, the agent a plane message ran for, is ``None`` when absent). ``jit/log/since``
answers the same bodies from a log position, so a late subscriber misses nothing.

:class:`Subscription` receives live events into a queue (or hands them to a callback).
:class:`EventStream` is the way not to miss one (``docs/plane.md``, "Events"): it subscribes
first, then reads the log from the position asked, and yields every event once, in ``seq``
order — dropping live events it already has, and reading the log again whenever a live event
skips a ``seq`` or the subscription has been quiet for a while (an event published before
the subscription became routable, or dropped on the way, is fetched rather than lost).
"""

from __future__ import annotations

import queue
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional

from . import cbor

if TYPE_CHECKING:  # pragma: no cover
    from .client import Agent

__all__ = ["Event", "EventStream", "Subscription", "decode_event"]

Event = Dict[str, Any]


def decode_event(body: bytes) -> Optional[Event]:
    """A log record's body as ``{seq, prev, at, op, by}`` (``by`` ``None`` if absent); ``None``
    for bytes that are not a log record."""
    try:
        value = cbor.decode(body)
    except cbor.CborError:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("seq"), int):
        return None
    op = value.get("op")
    return {
        "seq": value["seq"],
        "prev": value.get("prev"),
        "at": value.get("at"),
        "op": op if isinstance(op, dict) else {"op": op},
        "by": value.get("by"),
    }


class Subscription:
    """A live subscription to one kernel topic (default ``jit/kernel/events``).

    With a ``callback``, each decoded event is handed to it (on a Zenoh thread). Without one,
    events queue up: iterate the subscription, or call :meth:`get` with a timeout.
    """

    def __init__(
        self,
        session: Any,
        key: str,
        callback: Optional[Callable[[Event], None]] = None,
    ):
        self.key = key
        self._queue: "queue.Queue[Event]" = queue.Queue()
        self._callback = callback
        self._closed = False

        def on_sample(sample: Any) -> None:
            event = decode_event(sample.payload.to_bytes())
            if event is None:
                return
            if self._callback is not None:
                self._callback(event)
            else:
                self._queue.put(event)

        self._subscriber = session.declare_subscriber(key, on_sample)

    def get(self, timeout: Optional[float] = None) -> Event:
        """The next event; raises ``queue.Empty`` after ``timeout`` seconds without one."""
        return self._queue.get(timeout=timeout)

    def __iter__(self) -> Iterator[Event]:
        while not self._closed:
            try:
                yield self._queue.get(timeout=0.2)
            except queue.Empty:
                continue

    def close(self) -> None:
        """Undeclares the subscription."""
        if not self._closed:
            self._closed = True
            try:
                self._subscriber.undeclare()
            except Exception:
                pass

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class EventStream:
    """Every event from log position ``start`` on, each once, in ``seq`` order: the log's
    backlog, then live ones (see the module's doc for how nothing is missed).

    Iterate it (blocking), or call :meth:`next` with a timeout. With a ``callback``, a thread
    feeds it every event until :meth:`close`.
    """

    def __init__(
        self,
        agent: "Agent",
        start: int,
        callback: Optional[Callable[[Event], None]] = None,
        catch_up_after: float = 1.0,
    ):
        self._agent = agent
        self._next = max(int(start), 1)  # the seq expected next
        self._buffer: List[Event] = []
        self._catch_up_after = catch_up_after
        self._closed = False
        # Subscribe first, then read the log: nothing can fall between the two.
        self._subscription = agent.subscribe()
        self._backfill()
        self._thread: Optional[threading.Thread] = None
        if callback is not None:
            self._thread = threading.Thread(
                target=self._feed, args=(callback,), name="jit-event-stream", daemon=True
            )
            self._thread.start()

    @property
    def position(self) -> int:
        """The ``seq`` of the next event this stream will yield."""
        return self._next

    def _backfill(self) -> None:
        for event in self._agent.events_since(self._next):
            self._take(event)

    def _take(self, event: Event) -> None:
        if event["seq"] < self._next or any(e["seq"] == event["seq"] for e in self._buffer):
            return  # already had it
        self._buffer.append(event)
        self._buffer.sort(key=lambda e: e["seq"])

    def _pop_ready(self) -> Optional[Event]:
        if self._buffer and self._buffer[0]["seq"] == self._next:
            event = self._buffer.pop(0)
            self._next += 1
            return event
        return None

    def next(self, timeout: Optional[float] = None) -> Event:
        """The next event in ``seq`` order; raises ``TimeoutError`` after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        quiet_since = time.monotonic()
        while True:
            if self._closed:
                raise RuntimeError("the stream is closed")
            ready = self._pop_ready()
            if ready is not None:
                return ready
            wait = 0.1
            if self._buffer:
                # A live event skipped some seq: read them from the log (if the log does not
                # show them yet, wait a little and ask again).
                self._backfill()
                if self._buffer[0]["seq"] == self._next:
                    continue
                wait = 0.05
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("no event in time")
                wait = min(wait, left)
            try:
                self._take(self._subscription.get(timeout=wait))
                quiet_since = time.monotonic()
            except queue.Empty:
                if time.monotonic() - quiet_since >= self._catch_up_after:
                    # Quiet: make sure nothing was published before the route existed.
                    self._backfill()
                    quiet_since = time.monotonic()

    def __iter__(self) -> Iterator[Event]:
        while not self._closed:
            try:
                yield self.next(timeout=0.5)
            except TimeoutError:
                continue
            except RuntimeError:
                return

    def _feed(self, callback: Callable[[Event], None]) -> None:
        while not self._closed:
            try:
                event = self.next(timeout=0.5)
            except TimeoutError:
                continue
            except Exception:
                if self._closed:
                    return
                time.sleep(0.5)
                continue
            callback(event)

    def close(self) -> None:
        """Stops the stream and its subscription."""
        self._closed = True
        self._subscription.close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def __enter__(self) -> "EventStream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
