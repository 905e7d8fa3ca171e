"""Typed errors: every refusal the daemon answers, and the client's own failures.

A refusal arrives as ``{"status": "error", "error": {"code", "message", "details"?}}``; it
becomes an instance of the class registered for its code (see ``docs/codes.md``), all of them
subclasses of :class:`JitError`, grouped by family:

- :class:`PlaneRefusal` — the message plane refused the envelope (``not_owner``,
  ``unknown_agent``, ``stale``, ``replayed``, ``rate_limited``, …);
- :class:`KernelError` — the kernel refused the operation (``patch_rejected``, ``bad_path``,
  ``merge_conflict``, ``path_not_found``, …);
- :class:`ServerFailure` — the daemon's environment failed (``store_error``, ``no_space``, …);
- :class:`RpcError` — the RPC's own refusals (not answered on the plane, listed for completeness);
- :class:`ClientError` — this client's failures (``no_ack``, ``plane_unavailable``).

A code this module does not know still raises :class:`JitError` with that code, so callers can
always match on ``error.code``.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Type

__all__ = [
    "JitError",
    "error_for",
    "error_class",
    "CODES",
    # families
    "PlaneRefusal",
    "KernelError",
    "ServerFailure",
    "RpcError",
    "ClientError",
    # plane
    "TooLarge",
    "Malformed",
    "UnknownTopic",
    "Unsigned",
    "UnknownAgent",
    "BadSignature",
    "Replayed",
    "Stale",
    "RateLimited",
    "NotOwner",
    "Forbidden",
    "NameTaken",
    "Quarantined",
    "Unsupported",
    "JournalDamaged",
    "Internal",
    # kernel
    "InvalidInput",
    "BadCbor",
    "BadNode",
    "BadPath",
    "BadEdit",
    "BadRefName",
    "BadConfig",
    "InvariantViolation",
    "PatchRejected",
    "PatchTooLarge",
    "MergeConflict",
    "NodeNotFound",
    "WrongNodeType",
    "RefNotFound",
    "RefExists",
    "TagImmutable",
    "NotFastForward",
    "RefChanged",
    "BranchCheckedOut",
    "UnknownRevision",
    "AmbiguousRevision",
    "PathNotFound",
    "SwsNotFound",
    "NotARepository",
    "AlreadyInitialized",
    "InsecureListen",
    "OtherUniverse",
    "SyncFailed",
    "IdentityGap",
    "Equivocation",
    # environment
    "StoreError",
    "IoError",
    "NoSpace",
    "Corrupt",
    "StoreTruncated",
    "NewerLayout",
    "CorruptLog",
    # rpc
    "BadRequest",
    "FrameTooLarge",
    "TooManyItems",
    "Timeout",
    "Busy",
    "TooManyConnections",
    "PermissionDenied",
    # client
    "PlaneUnavailable",
    "NoAck",
    "NotApproved",
    "EnrolmentDenied",
]


class JitError(Exception):
    """A refusal or failure with a stable ``code``, a human ``message`` and optional
    ``details`` (whatever the daemon attached, e.g. a merge's conflicts)."""

    code: str = "error"

    def __init__(self, code: Optional[str] = None, message: str = "", details: Any = None):
        if code is not None:
            self.code = code
        self.message = message
        self.details = details
        super().__init__(f"{self.code}: {message}" if message else self.code)

    def __reduce__(self):
        return (error_for, (self.code, self.message, self.details))


# Families.
class PlaneRefusal(JitError):
    """The message plane refused the envelope; nothing of it was applied."""


class KernelError(JitError):
    """The kernel refused the operation; nothing of it was applied."""


class ServerFailure(JitError):
    """The daemon's environment (store, disk) failed."""


class RpcError(JitError):
    """A refusal of the RPC socket's framing (not answered on the plane)."""


class ClientError(JitError):
    """This client could not get an answer."""


# The message plane's refusals.
class TooLarge(PlaneRefusal):
    """The envelope exceeds 4 MiB."""
    code = "too_large"


class Malformed(PlaneRefusal):
    """Not a canonical CBOR envelope (or a bad ``msg_id``)."""
    code = "malformed"


class UnknownTopic(PlaneRefusal):
    """No operation on that key expression."""
    code = "unknown_topic"


class Unsigned(PlaneRefusal):
    """The envelope carries no signature."""
    code = "unsigned"


class UnknownAgent(PlaneRefusal):
    """The sender is not registered (or was revoked)."""
    code = "unknown_agent"


class BadSignature(PlaneRefusal):
    """The signature does not verify."""
    code = "bad_signature"


class Replayed(PlaneRefusal):
    """The ``msg_id`` was already used for other content."""
    code = "replayed"


class Stale(PlaneRefusal):
    """The message is older than what the sender's window remembers."""
    code = "stale"


class RateLimited(PlaneRefusal):
    """The sender is over its rate (or, for enrolment, too many requests are pending)."""
    code = "rate_limited"


class NotOwner(PlaneRefusal):
    """The sender neither owns nor is a delegate of the SWS."""
    code = "not_owner"


class Forbidden(PlaneRefusal):
    """The sender lacks the permission."""
    code = "forbidden"


class NameTaken(PlaneRefusal):
    """Enrolment: another key holds, or asked for, that agent name."""
    code = "name_taken"


class Quarantined(PlaneRefusal):
    """Another universe misbehaved; nothing more is imported from it."""
    code = "quarantined"


class Unsupported(PlaneRefusal):
    """The capability or protocol version is not shared."""
    code = "unsupported"


class JournalDamaged(PlaneRefusal):
    """Records of the plane's journal could not be read."""
    code = "journal_damaged"


class Internal(PlaneRefusal):
    """The server failed in a way it did not expect (a bug); nothing was applied."""
    code = "internal"


# The kernel: input refused.
class InvalidInput(KernelError):
    """The input is malformed (an unknown field, a bad payload, nothing to commit)."""
    code = "invalid_input"


class BadCbor(KernelError):
    """Bytes are not canonical CBOR."""
    code = "bad_cbor"


class BadNode(KernelError):
    """A node does not decode as its type."""
    code = "bad_node"


class BadPath(KernelError):
    """A path is malformed or reserved (``.git``, ``.jit``)."""
    code = "bad_path"


class BadEdit(KernelError):
    """A patch names a path whose parent directory is missing or is a file."""
    code = "bad_edit"


class BadRefName(KernelError):
    """A ref name is malformed."""
    code = "bad_ref_name"


class BadConfig(KernelError):
    """A configuration file does not parse or holds a bad value."""
    code = "bad_config"


class InvariantViolation(KernelError):
    """A node would break a DAG invariant."""
    code = "invariant_violation"


class PatchRejected(KernelError):
    """A patch does not apply to the SWS."""
    code = "patch_rejected"


class PatchTooLarge(KernelError):
    """A patch has more than 1,048,576 operations."""
    code = "patch_too_large"


class MergeConflict(KernelError):
    """A commit met conflicts; :attr:`conflicts` lists them (``{path, kind, base?, ours?,
    theirs?}``) and the SWS shows them."""
    code = "merge_conflict"

    @property
    def conflicts(self) -> list:
        details = self.details
        if isinstance(details, dict):
            details = details.get("conflicts", [])
        return list(details) if isinstance(details, (list, tuple)) else []


class NodeNotFound(KernelError):
    """No node has that id."""
    code = "node_not_found"


class WrongNodeType(KernelError):
    """A node is not of the type asked for."""
    code = "wrong_node_type"


class RefNotFound(KernelError):
    """No such ref."""
    code = "ref_not_found"


class RefExists(KernelError):
    """The ref already exists."""
    code = "ref_exists"


class TagImmutable(KernelError):
    """Tags never move."""
    code = "tag_immutable"


class NotFastForward(KernelError):
    """The update would move a branch other than forward."""
    code = "not_fast_forward"


class RefChanged(KernelError):
    """The ref moved since it was read."""
    code = "ref_changed"


class BranchCheckedOut(KernelError):
    """The branch is checked out and cannot be deleted."""
    code = "branch_checked_out"


class UnknownRevision(KernelError):
    """A revision does not resolve."""
    code = "unknown_revision"


class AmbiguousRevision(KernelError):
    """A short id matches more than one node."""
    code = "ambiguous_revision"


class PathNotFound(KernelError):
    """No such path in that tree."""
    code = "path_not_found"


class SwsNotFound(KernelError):
    """No such SWS."""
    code = "sws_not_found"


class NotARepository(KernelError):
    """No JIT universe here."""
    code = "not_a_repository"


class AlreadyInitialized(KernelError):
    """A universe already exists here."""
    code = "already_initialized"


class InsecureListen(KernelError):
    """A plain listen off loopback was refused."""
    code = "insecure_listen"


class OtherUniverse(KernelError):
    """The peer is another universe."""
    code = "other_universe"


class SyncFailed(KernelError):
    """A sync with a peer failed."""
    code = "sync_failed"


class IdentityGap(KernelError):
    """An identity document skips a version."""
    code = "identity_gap"


class Equivocation(KernelError):
    """Two validly signed statements of one universe contradict each other."""
    code = "equivocation"


# The kernel: the environment failed.
class StoreError(ServerFailure):
    """LMDB failed."""
    code = "store_error"


class IoError(ServerFailure):
    """A file system call failed."""
    code = "io_error"


class NoSpace(ServerFailure):
    """The disk holding the store is full; nothing was kept."""
    code = "no_space"


class Corrupt(ServerFailure):
    """A stored node's bytes no longer hash to its id."""
    code = "corrupt"


class StoreTruncated(ServerFailure):
    """``data.mdb`` no longer holds the pages its header names."""
    code = "store_truncated"


class NewerLayout(ServerFailure):
    """The store was written by a newer build."""
    code = "newer_layout"


class CorruptLog(ServerFailure):
    """The operation log is damaged."""
    code = "corrupt_log"


# The RPC's own refusals.
class BadRequest(RpcError):
    """The request is not canonical CBOR of the expected shape."""
    code = "bad_request"


class FrameTooLarge(RpcError):
    """A frame is longer than the daemon accepts."""
    code = "frame_too_large"


class TooManyItems(RpcError):
    """A request holds more items than one request may."""
    code = "too_many_items"


class Timeout(RpcError):
    """A frame was not received whole in time."""
    code = "timeout"


class Busy(RpcError):
    """The daemon's budget for bytes in flight is spent."""
    code = "busy"


class TooManyConnections(RpcError):
    """The daemon serves as many connections as it may."""
    code = "too_many_connections"


class PermissionDenied(RpcError):
    """The caller may not talk to this daemon."""
    code = "permission_denied"


# The client's side.
class PlaneUnavailable(ClientError):
    """The message plane (Zenoh) could not be reached or failed."""
    code = "plane_unavailable"


class NoAck(ClientError):
    """No acknowledgement arrived within the retry budget. The message may or may not have
    been applied; sending the same envelope again (which the client does on every retry) is
    always safe."""
    code = "no_ack"


class NotApproved(ClientError):
    """Enrolment: the request was not approved in the time given."""
    code = "not_approved"


class EnrolmentDenied(ClientError):
    """Enrolment: the daemon reports the request denied. (The daemon of this writing forgets a
    denied request instead, so a poll files it again as pending: see ``wait_until_approved``.)"""
    code = "enrolment_denied"


def _registry() -> Dict[str, Type[JitError]]:
    table: Dict[str, Type[JitError]] = {}
    pending = list(JitError.__subclasses__())
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if "code" in cls.__dict__:
            table[cls.__dict__["code"]] = cls
    return table


#: Every code this module maps to its own class.
CODES: Dict[str, Type[JitError]] = _registry()


def error_class(code: str) -> Type[JitError]:
    """The class for ``code`` (:class:`JitError` for a code not known here)."""
    return CODES.get(code, JitError)


def error_for(code: str, message: str = "", details: Any = None) -> JitError:
    """An instance of the class for ``code``, carrying ``message`` and ``details``."""
    cls = CODES.get(code)
    if cls is None:
        return JitError(code, message, details)
    return cls(code, message, details)
