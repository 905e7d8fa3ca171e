"""The agent: a Zenoh client that signs its messages and retries each one, with the same
envelope bytes, until it is acknowledged (``docs/plane.md``; the Rust reference is
``plane/src/agent.rs``).

Every operation is a Zenoh query whose payload is a signed envelope; the reply is the
acknowledgement, sent once the effect is durable. No reply (a timeout, a lost connection, a
daemon restart) means: send the same bytes again. The kernel remembers each delivered
``(sender, msg_id)`` with its answer, so a repeat is answered with the original result and
never applied twice — the client's at-least-once becomes exactly-once.

Many writes can be in flight at once (:meth:`Agent.push_many`): answers are awaited oldest
first, and when the oldest goes unanswered every unanswered message is sent again, oldest first
(go-back-N), so the kernel sees them in their order again.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import zenoh

from . import cbor
from .envelope import Envelope, KeyLike, generate_key, load_key, public_key_bytes, public_key_hex
from .errors import ClientError, EnrolmentDenied, JitError, NoAck, NotApproved, PlaneUnavailable, error_for
from .events import Event, EventStream, Subscription, decode_event
from .patches import Patch
from .transport import TlsOptions, endpoints_of, local_endpoint, make_config, open_session

__all__ = ["Agent", "MAX_IN_FLIGHT"]

#: The kernel remembers answers for each sender's last 4,096 messages; like the Rust library,
#: keep at most a quarter of that unanswered so every retry is answered from its record.
MAX_IN_FLIGHT = 1024

#: ``jit/log/since`` answers at most this many events per query.
MAX_SINCE = 1024

Result = Union[Any, JitError]


def _now_micros() -> int:
    return time.time_ns() // 1000


def _response(data: bytes) -> Dict[str, Any]:
    """A reply's canonical CBOR ``{status, result | error}``."""
    value = cbor.decode(data)
    if not isinstance(value, dict) or value.get("status") not in ("ok", "error"):
        raise ClientError("malformed_answer", f"not a plane answer: {value!r}")
    return value


def _result(response: Dict[str, Any]) -> Result:
    """The answer's result, or its refusal as a typed :class:`JitError` (returned, not raised)."""
    if response["status"] == "ok":
        return response.get("result")
    error = response.get("error") or {}
    return error_for(
        str(error.get("code", "error")), str(error.get("message", "")), error.get("details")
    )


def _raise(result: Result) -> Any:
    if isinstance(result, JitError):
        raise result
    return result


class _InFlight:
    __slots__ = ("key", "data", "handler")

    def __init__(self, key: str, data: bytes, handler: Any):
        self.key = key
        self.data = data
        self.handler = handler


class Agent:
    """A connected agent. Make one with :meth:`connect` (a registered agent), :meth:`local`
    (a key file in a universe on this machine) or :meth:`enrol` (ask to join).

    Thread-safe: several threads may send through one agent (each message gets its own
    ``ts``); a :meth:`push_many` keeps its own window.

    ``attempt_timeout`` is how long one attempt waits for an answer; ``retry_for`` how long a
    message may go unanswered, across resends, before :class:`NoAck` is raised (the Rust
    library counts attempts instead; a time budget also covers a daemon that is restarting,
    during which queries fail at once).
    """

    def __init__(
        self,
        session: Any,
        name: str,
        key: KeyLike,
        namespace: str = "",
        attempt_timeout: float = 2.0,
        retry_for: float = 60.0,
        owns_session: bool = True,
    ):
        self._session = session
        self.name = name
        self._key = load_key(key)
        self.namespace = namespace.strip("/")
        self.attempt_timeout = float(attempt_timeout)
        self.retry_for = float(retry_for)
        self._owns_session = owns_session
        self._ts = 0
        self._ts_lock = threading.Lock()
        self._closed = False
        #: The last enrolment answer (:meth:`request_enrolment`), if any.
        self.enrolment: Optional[Dict[str, Any]] = None
        self._enrol_args: Optional[Dict[str, Any]] = None

    # ----------------------------------------------------------------------------------------
    # Connecting

    @classmethod
    def connect(
        cls,
        name: str,
        key: KeyLike,
        endpoint: Union[str, Sequence[str], None] = None,
        namespace: str = "",
        *,
        universe: Union[str, os.PathLike, None] = None,
        tls: Optional[TlsOptions] = None,
        zenoh_config: Optional[Dict[str, Any]] = None,
        attempt_timeout: float = 2.0,
        retry_for: float = 60.0,
    ) -> "Agent":
        """Opens a Zenoh client session as agent ``name`` signing with ``key`` (an
        ``Ed25519PrivateKey``, 32 seed bytes, 64 hex characters or a key file's path).

        ``endpoint`` is one Zenoh endpoint or several (``unixsock-stream/<path>``,
        ``tcp/127.0.0.1:7447``, ``tls/host:port``); or give ``universe`` (a universe
        directory) for its daemon's Unix socket. ``tls`` sets Zenoh's TLS options for ``tls/``
        endpoints; ``zenoh_config`` adds raw ``{path: value}`` Zenoh settings.
        """
        if endpoint is None:
            if universe is None:
                raise ValueError("give an endpoint or a universe directory")
            endpoint = local_endpoint(universe)
        config = make_config(endpoints_of(endpoint), tls=tls, extra=zenoh_config)
        session = open_session(config)
        return cls(
            session,
            name,
            key,
            namespace=namespace,
            attempt_timeout=attempt_timeout,
            retry_for=retry_for,
        )

    @classmethod
    def local(cls, universe: Union[str, os.PathLike], name: str, **options: Any) -> "Agent":
        """Agent ``name`` of the universe in directory ``universe``, with the key ``jit agent
        new`` wrote (``.jit/agents/NAME.key``), over the daemon's Unix socket."""
        key_file = Path(universe) / ".jit" / "agents" / f"{name}.key"
        return cls.connect(name, key_file, universe=universe, **options)

    @staticmethod
    def generate_key():
        """A fresh ed25519 key (see :func:`jit_agent.write_key_file` to keep it)."""
        return generate_key()

    @property
    def public_key(self) -> str:
        """This agent's public key, 64 hex characters."""
        return public_key_hex(self._key)

    @property
    def session(self) -> Any:
        """The Zenoh session (to subscribe to other kernel topics)."""
        return self._session

    def close(self) -> None:
        """Closes the session (if this agent opened it)."""
        if self._closed:
            return
        self._closed = True
        if self._owns_session:
            try:
                self._session.close()
            except Exception:
                pass

    def __enter__(self) -> "Agent":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ----------------------------------------------------------------------------------------
    # Envelopes and delivery

    def full_key(self, key: str) -> str:
        """``key`` with the namespace prefix, as sent on Zenoh."""
        return f"{self.namespace}/{key}" if self.namespace else key

    def next_ts(self) -> int:
        """The next logical timestamp: strictly increasing, and at least the current time in
        microseconds — so a restarted client stays above the ``ts`` of its previous life."""
        now = _now_micros()
        with self._ts_lock:
            self._ts = max(self._ts + 1, now)
            return self._ts

    def envelope(self, key: str, payload: Any) -> Envelope:
        """A signed envelope for ``key`` (without namespace) with the next ``ts`` and
        ``msg_id`` ``NAME-TS`` (as the Rust library makes them)."""
        ts = self.next_ts()
        return Envelope.signed(key, self.name, ts, f"{self.name}-{ts}", payload, self._key)

    def _dispatch(self, full_key: str, data: bytes) -> Any:
        """Sends one query; ``None`` if it could not be sent (the caller retries). Congestion
        control ``Drop``: a stalled agent must not hold the daemon up; a dropped request or
        reply is retried like a lost one."""
        try:
            return self._session.get(
                full_key,
                payload=data,
                timeout=self.attempt_timeout,
                congestion_control=zenoh.CongestionControl.DROP,
            )
        except Exception:
            return None

    @staticmethod
    def _answer_of(handler: Any) -> Optional[bytes]:
        """The payload of the first good reply, or ``None`` if none came in time (Zenoh reports
        a timeout as an error reply reading "Timeout", then ends the query)."""
        if handler is None:
            return None
        while True:
            try:
                reply = handler.recv()
            except Exception:
                return None  # the query ended without a reply
            ok = reply.ok
            if ok is not None:
                return ok.payload.to_bytes()
            # An error reply (a timeout): no answer; the caller resends.
            return None

    def deliver(
        self,
        messages: Iterable[Tuple[str, bytes]],
        window: int = 1,
        progress: Optional[Callable[[int], None]] = None,
    ) -> List[Dict[str, Any]]:
        """Sends prepared messages ``(full key, envelope bytes)`` in order with up to
        ``window`` unanswered at a time (at most :data:`MAX_IN_FLIGHT`), resending until each
        is answered; returns the answers (``{status, …}``) in order. ``progress``, if given, is
        called with the number answered so far after each answer.

        Go-back-N: answers are awaited oldest first; when the oldest goes unanswered, every
        unanswered message is sent again, oldest first, with the same bytes. Raises
        :class:`NoAck` if the oldest stays unanswered for ``retry_for`` seconds.
        """
        window = max(1, min(int(window), MAX_IN_FLIGHT))
        source = iter(messages)
        in_flight: "deque[_InFlight]" = deque()
        answers: List[Dict[str, Any]] = []
        unanswered_since: Optional[float] = None
        backoff = 0.05
        exhausted = False
        while True:
            while not exhausted and len(in_flight) < window:
                try:
                    key, data = next(source)
                except StopIteration:
                    exhausted = True
                    break
                in_flight.append(_InFlight(key, data, self._dispatch(key, data)))
            if not in_flight:
                return answers
            oldest = in_flight[0]
            answer = self._answer_of(oldest.handler)
            oldest.handler = None
            if answer is not None:
                answers.append(_response(answer))
                in_flight.popleft()
                if progress is not None:
                    progress(len(answers))
                unanswered_since = None
                backoff = 0.05
                continue
            now = time.monotonic()
            if unanswered_since is None:
                unanswered_since = now
            elif now - unanswered_since >= self.retry_for:
                raise NoAck(
                    message=f"no acknowledgement on {oldest.key} within {self.retry_for:g} s"
                )
            # A query that fails at once (no route: the daemon is restarting) would otherwise
            # spin; a timed-out one has waited already.
            time.sleep(backoff)
            backoff = min(backoff * 2, 1.0)
            for message in in_flight:
                message.handler = self._dispatch(message.key, message.data)

    def send(self, envelope: Envelope) -> Dict[str, Any]:
        """Sends one envelope until answered; returns the raw answer ``{status, …}``."""
        return self.deliver([(self.full_key(envelope.key), envelope.encode())])[0]

    def send_raw(self, key: str, data: bytes, timeout: Optional[float] = None) -> Optional[Dict[str, Any]]:
        """Sends ``data`` once on ``key`` (without namespace), no retry; the raw answer, or
        ``None`` if none came within ``timeout`` (default ``attempt_timeout``). For tests and
        tools that craft their own envelopes."""
        try:
            handler = self._session.get(
                self.full_key(key),
                payload=bytes(data),
                timeout=timeout if timeout is not None else self.attempt_timeout,
                congestion_control=zenoh.CongestionControl.DROP,
            )
        except Exception as error:
            raise PlaneUnavailable(message=str(error)) from error
        answer = self._answer_of(handler)
        return None if answer is None else _response(answer)

    def request_many(
        self,
        writes: Iterable[Tuple[str, Any]],
        window: int = 1,
        progress: Optional[Callable[[int], None]] = None,
    ) -> List[Result]:
        """Signs and sends ``(key, payload)`` pairs in order with up to ``window`` in flight;
        one result per write, in order: the kernel's value, or its refusal as a
        :class:`JitError` instance (returned, not raised: a refused message does not stop
        those behind it). Envelopes are signed lazily, as the window opens."""

        def prepared() -> Iterator[Tuple[str, bytes]]:
            for key, payload in writes:
                yield self.full_key(key), self.envelope(key, payload).encode()

        return [_result(answer) for answer in self.deliver(prepared(), window, progress)]

    def request(self, key: str, payload: Any = None) -> Any:
        """Signs and sends one message on ``key`` (without namespace) until answered; returns
        the result or raises the refusal as its :class:`JitError` subclass."""
        return _raise(self.request_many([(key, {} if payload is None else payload)])[0])

    # ----------------------------------------------------------------------------------------
    # SWS operations

    def create(
        self,
        branch: Optional[str] = None,
        from_: Optional[str] = None,
        name: Optional[str] = None,
    ) -> Dict[str, Any]:
        """Creates an SWS owned by this agent on ``branch`` (default: the checked-out branch),
        based on revision ``from_`` (default the branch's tip), optionally named; returns its
        status ``{id, owner, name?, branch, base, tip?, tree, patches, changes, conflicts}``."""
        payload: Dict[str, Any] = {}
        if branch is not None:
            payload["branch"] = branch
        if from_ is not None:
            payload["from"] = from_
        if name is not None:
            payload["name"] = name
        return self.request("jit/kernel/create", payload)

    @staticmethod
    def _sws(sws: Union[str, Dict[str, Any]]) -> str:
        return sws["id"] if isinstance(sws, dict) else str(sws)

    def status(self, sws: Union[str, Dict[str, Any]]) -> Dict[str, Any]:
        """The SWS's status (as the RPC's ``shadow.status``)."""
        return self.request(f"jit/sws/{self._sws(sws)}/status", {})

    def analyze(self, sws: Union[str, Dict[str, Any]]) -> List[Dict[str, Any]]:
        """The conflicts a commit would meet now (empty: it merges cleanly)."""
        return self.request(f"jit/sws/{self._sws(sws)}/analyze", {})

    def read(
        self,
        sws: Union[str, Dict[str, Any]],
        path: str,
        offset: Optional[int] = None,
        len: Optional[int] = None,  # noqa: A002 - the wire's name
    ) -> Dict[str, Any]:
        """A file of the SWS's working tree: ``{kind, blob, size, offset, content}`` — ``blob``
        (64 hex characters) is what an ``edit``'s ``base`` needs; ``content`` the range asked
        (at most 4 MiB)."""
        payload: Dict[str, Any] = {"path": path}
        if offset is not None:
            payload["offset"] = int(offset)
        if len is not None:
            payload["len"] = int(len)
        return self.request(f"jit/sws/{self._sws(sws)}/read", payload)

    def list(self, sws: Union[str, Dict[str, Any]], path: Optional[str] = None) -> Dict[str, Any]:
        """A directory of the SWS's working tree (default the root):
        ``{entries: [{name, kind, id, size?}]}``."""
        payload: Dict[str, Any] = {} if path is None else {"path": path}
        return self.request(f"jit/sws/{self._sws(sws)}/list", payload)

    def diff(self, sws: Union[str, Dict[str, Any]]) -> List[Dict[str, Any]]:
        """The SWS's changed paths: ``[{path, change, kind, old?, new?}]``."""
        return self.request(f"jit/sws/{self._sws(sws)}/diff", {})

    def history(self, sws: Union[str, Dict[str, Any]]) -> List[Dict[str, Any]]:
        """The SWS's micro-history: ``[{seq, patch_id, author, ts, ops, tree}]``."""
        return self.request(f"jit/sws/{self._sws(sws)}/history", {})

    def tree(self, rev: Optional[str] = None, path: Optional[str] = None) -> Dict[str, Any]:
        """A directory of a revision's tree (``jit/kernel/tree``; default HEAD, the root):
        ``{entries: [{name, kind, id, size?}], snapshot}`` (``snapshot`` the revision's
        snapshot, hex)."""
        payload: Dict[str, Any] = {}
        if rev is not None:
            payload["rev"] = rev
        if path is not None:
            payload["path"] = path
        return self.request("jit/kernel/tree", payload)

    def read_at(
        self,
        rev: Optional[str],
        path: str,
        offset: Optional[int] = None,
        len: Optional[int] = None,  # noqa: A002
    ) -> Dict[str, Any]:
        """A file of a revision's tree (``jit/kernel/read``; ``rev`` ``None`` for HEAD):
        ``{kind, blob, size, offset, content, snapshot}``, ``content`` the range asked (at
        most 4 MiB)."""
        payload: Dict[str, Any] = {"path": path}
        if rev is not None:
            payload["rev"] = rev
        if offset is not None:
            payload["offset"] = int(offset)
        if len is not None:
            payload["len"] = int(len)
        return self.request("jit/kernel/read", payload)

    def push(self, sws: Union[str, Dict[str, Any]], patch: Patch) -> Dict[str, Any]:
        """Applies a patch to the SWS: ``{seq, tree, duplicate}`` (``duplicate`` when that
        patch id had been applied before)."""
        return self.request(f"jit/sws/{self._sws(sws)}/patch", patch)

    def push_many(
        self,
        sws: Union[str, Dict[str, Any]],
        patches: Iterable[Patch],
        window: int = 256,
        raise_errors: bool = True,
        progress: Optional[Callable[[int], None]] = None,
    ) -> List[Result]:
        """Pushes patches in order with up to ``window`` unacknowledged (go-back-N, see
        :meth:`deliver`): the throughput path. One answer per patch, in order.

        Each patch is its own message: a refused one does not stop those behind it. With
        ``raise_errors`` (the default) the first refusal is raised once all are answered, with
        ``.results`` (every answer) and ``.index`` set on it; otherwise refusals are returned
        in the list as :class:`JitError` instances. ``progress(n)`` is called as answers come.
        """
        key = f"jit/sws/{self._sws(sws)}/patch"
        results = self.request_many(((key, patch) for patch in patches), window, progress)
        if raise_errors:
            for index, result in enumerate(results):
                if isinstance(result, JitError):
                    result.results = results  # type: ignore[attr-defined]
                    result.index = index  # type: ignore[attr-defined]
                    raise result
        return results

    def commit(
        self,
        sws: Union[str, Dict[str, Any]],
        author: str,
        message: str,
        time: Optional[int] = None,  # noqa: A002 - the wire's name
        tz: Optional[int] = None,
    ) -> Dict[str, Any]:
        """Collapses the SWS into a snapshot on its branch: ``{snapshot, rewrite?}``. ``author``
        is ``Name <email>``; ``time`` seconds since the epoch (default now); ``tz`` minutes
        east of UTC (default the local offset). A conflict raises :class:`MergeConflict`."""
        import time as _time

        if time is None:
            time = int(_time.time())
        if tz is None:
            tz = int(_time.localtime().tm_gmtoff // 60)
        payload = {"author": author, "message": message, "time": int(time), "tz": int(tz)}
        return self.request(f"jit/sws/{self._sws(sws)}/commit", payload)

    def discard(self, sws: Union[str, Dict[str, Any]]) -> None:
        """Throws the SWS away."""
        self.request(f"jit/sws/{self._sws(sws)}/discard", {})

    # ----------------------------------------------------------------------------------------
    # Events

    def events_page(self, start: int) -> Dict[str, Any]:
        """One ``jit/log/since`` answer from log position ``start``: ``{events: [bytes], next,
        tail}`` (at most 1,024 events). Unsigned; retried on no answer like any query."""
        payload = cbor.encode({"from": int(start)})
        answer = self.deliver([(self.full_key("jit/log/since"), payload)])[0]
        return _raise(_result(answer))

    def events_since(self, start: int) -> List[Event]:
        """Every event from log position ``start`` (log positions start at 1) up to the log's
        current end, decoded, in order — paging ``jit/log/since`` until ``next > tail``."""
        events: List[Event] = []
        position = int(start)
        while True:
            page = self.events_page(position)
            for body in page.get("events", []):
                event = decode_event(body)
                if event is not None:
                    events.append(event)
            if page["next"] > page["tail"] or page["next"] <= position:
                return events
            position = page["next"]

    def log_tail(self) -> int:
        """The log's last position (the ``seq`` of the newest event)."""
        return int(self.events_page(1 << 63)["tail"])

    def subscribe(
        self,
        callback: Optional[Callable[[Event], None]] = None,
        topic: str = "jit/kernel/events",
    ) -> Subscription:
        """A live subscription to ``topic`` (``jit/kernel/events``, ``jit/kernel/ref_updates``
        or ``jit/kernel/sws_lifecycle``): decoded events go to ``callback``, or queue up for
        iteration. A subscriber receives nothing published before it connected: see
        :meth:`follow`."""
        return Subscription(self._session, self.full_key(topic), callback)

    def follow(
        self,
        start: int,
        callback: Optional[Callable[[Event], None]] = None,
        catch_up_after: float = 1.0,
    ) -> EventStream:
        """Every event from log position ``start`` on, once each and in order: subscribes
        first, then reads the log from ``start``, and drops live events it already has
        (reading the log again on a gap). Iterate the stream, call its ``next(timeout)``, or
        pass a ``callback`` fed from a thread; ``close()`` it when done."""
        return EventStream(self, start, callback=callback, catch_up_after=catch_up_after)

    # ----------------------------------------------------------------------------------------
    # Enrolment

    @classmethod
    def enrol(
        cls,
        name: str,
        key: KeyLike,
        endpoint: Union[str, Sequence[str], None] = None,
        permissions: Optional[Sequence[str]] = None,
        note: Optional[str] = None,
        **options: Any,
    ) -> "Agent":
        """Asks the daemon to register ``key`` as agent ``name`` (``jit/agent/enrol``, signed
        with ``key`` itself: proof of possession) and returns the connected agent; its
        :attr:`enrolment` holds the answer (``{state: "pending"|"approved", name,
        public_key}``). The owner approves with ``jit agent approve NAME``; call
        :meth:`wait_until_approved` to wait for that. Connection options as for
        :meth:`connect`. Raises :class:`NameTaken` if another key holds or asked for the
        name."""
        agent = cls.connect(name, key, endpoint, **options)
        try:
            agent.request_enrolment(permissions=permissions, note=note)
        except BaseException:
            agent.close()
            raise
        return agent

    def request_enrolment(
        self, permissions: Optional[Sequence[str]] = None, note: Optional[str] = None
    ) -> Dict[str, Any]:
        """Sends (or repeats: it is idempotent) this agent's enrolment request; returns the
        answer ``{state, name, public_key}`` and keeps it in :attr:`enrolment`. Each call is a
        fresh envelope, so a repeat learns the current state."""
        if permissions is None and note is None and self._enrol_args is not None:
            payload = dict(self._enrol_args)
        else:
            payload = {"public_key": public_key_bytes(self._key)}
            if permissions is not None:
                payload["permissions"] = [str(p) for p in permissions]
            if note is not None:
                payload["note"] = str(note)
            self._enrol_args = dict(payload)
        answer = self.request("jit/agent/enrol", payload)
        self.enrolment = answer
        return answer

    @property
    def approved(self) -> bool:
        """Whether the last enrolment answer said ``approved``."""
        return bool(self.enrolment) and self.enrolment.get("state") == "approved"

    def wait_until_approved(self, timeout: float = 60.0, interval: float = 0.25) -> Dict[str, Any]:
        """Polls the enrolment every ``interval`` seconds until it is approved; returns the
        answer. Raises :class:`NotApproved` after ``timeout`` seconds, and
        :class:`EnrolmentDenied` as soon as the daemon answers ``denied`` (``jit agent deny``
        keeps the denial, so this key is not queued again)."""
        deadline = time.monotonic() + timeout
        while True:
            answer = self.request_enrolment()
            state = answer.get("state") if isinstance(answer, dict) else None
            if state == "approved":
                return answer
            if state == "denied":
                raise EnrolmentDenied(message=f"the enrolment of {self.name} was denied", details=answer)
            if time.monotonic() + interval > deadline:
                raise NotApproved(
                    message=f"{self.name} not approved within {timeout:g} s (state {state})",
                    details=answer,
                )
            time.sleep(interval)
