"""Patches and their operations, as the plane carries them.

A patch is ``{"id": text, "author": text, "ts": uint, "ops": [op, …]}``; each op is a map whose
``"op"`` names it (``docs/plane.md``, "The envelope"). The builders here return those maps, with
content as byte strings and blob ids as 32 bytes, ready for :meth:`jit_agent.Agent.push`.

``edit`` replaces line ranges of a text file and is checked against the blob the author edited
(``base``: the ``blob`` that :meth:`jit_agent.Agent.read` answers). Lines are split after each
``\\n``; a hunk's ``start`` is 0-based, ``remove`` counts lines, and every inserted line carries
its own ``\\n`` — :func:`hunk` normalises that.

:func:`blob_id` computes the id the kernel gives content held inline (up to 64 KiB), e.g. to
edit a file one has just written without reading it back.
"""

from __future__ import annotations

import uuid
from typing import Any, Dict, Iterable, List, Optional, Sequence, Union

from . import cbor

__all__ = [
    "INLINE_MAX",
    "Hunk",
    "Op",
    "Patch",
    "blob_id",
    "chmod",
    "delete",
    "edit",
    "hunk",
    "mkdir",
    "node_id",
    "patch",
    "put",
    "put_blob",
    "rename",
    "rmdir",
    "symlink",
]

Op = Dict[str, Any]
Patch = Dict[str, Any]
BlobLike = Union[bytes, bytearray, str]

#: Content up to this many bytes is one inline blob node; larger content is chunked.
INLINE_MAX = 64 * 1024


def node_id(value: BlobLike) -> bytes:
    """A node id as the wire carries it (32 bytes) from 32 bytes or 64 hex characters."""
    if isinstance(value, str):
        raw = bytes.fromhex(value)
    else:
        raw = bytes(value)
    if len(raw) != 32:
        raise ValueError("a node id is 32 bytes (64 hex characters)")
    return raw


def _content(content: Union[bytes, bytearray, memoryview, str]) -> bytes:
    if isinstance(content, str):
        return content.encode("utf-8")
    return bytes(content)


def put(path: str, content: Union[bytes, str], executable: bool = False) -> Op:
    """Create or replace a file (missing parent directories are created). Text is UTF-8."""
    op: Op = {"op": "put", "path": path, "content": _content(content)}
    if executable:
        op["executable"] = True
    return op


def put_blob(path: str, blob: BlobLike, executable: bool = False) -> Op:
    """Create or replace a file with a blob already in the DAG or this SWS."""
    op: Op = {"op": "put-blob", "path": path, "blob": node_id(blob)}
    if executable:
        op["executable"] = True
    return op


def delete(path: str) -> Op:
    """Remove a file or symlink."""
    return {"op": "delete", "path": path}


def rename(from_: str, to: str) -> Op:
    """Move a file, symlink or directory; ``to`` must not exist."""
    return {"op": "rename", "from": from_, "to": to}


def mkdir(path: str) -> Op:
    """Create an empty directory."""
    return {"op": "mkdir", "path": path}


def rmdir(path: str) -> Op:
    """Remove an empty directory."""
    return {"op": "rmdir", "path": path}


def symlink(path: str, target: str) -> Op:
    """Create a symbolic link ``path`` → ``target``."""
    return {"op": "symlink", "path": path, "target": target}


def chmod(path: str, executable: bool) -> Op:
    """Set or clear a file's executable bit."""
    return {"op": "chmod", "path": path, "executable": bool(executable)}


def _lines(insert: Union[str, Iterable[str]], final_newline: bool) -> List[str]:
    if isinstance(insert, (bytes, bytearray)):
        raise TypeError("inserted lines are text (str)")
    pieces = [insert] if isinstance(insert, str) else list(insert)
    lines: List[str] = []
    for piece in pieces:
        if not isinstance(piece, str):
            raise TypeError("inserted lines are text (str)")
        # A piece holding several lines becomes several; each keeps its own "\n", and a
        # line given without one gets one.
        parts = piece.split("\n")
        lines.extend(part + "\n" for part in parts[:-1])
        if parts[-1]:
            lines.append(parts[-1] + "\n")
    if not final_newline and lines:
        lines[-1] = lines[-1][:-1]
        if not lines[-1]:
            lines.pop()
    return lines


class Hunk(dict):
    """One line-range replacement, ``{start, remove, insert}`` with its lines normalised
    (a ``dict``, so it goes on the wire as it is). Made by :func:`hunk`."""


def hunk(
    start: int, remove: int, insert: Union[str, Sequence[str]] = (), final_newline: bool = True
) -> Hunk:
    """One line-range replacement: remove ``remove`` lines from line ``start`` (0-based) and
    insert ``insert`` in their place.

    ``insert`` is a list of lines or one string of lines. Every inserted line ends with its own
    ``\\n``: a line given without one gets one, and a string holding several lines is split.
    Pass ``final_newline=False`` to leave the last inserted line without ``\\n`` (for a file
    whose last line has none).
    """
    if int(start) < 0 or int(remove) < 0:
        raise ValueError("start and remove are non-negative")
    return Hunk(start=int(start), remove=int(remove), insert=_lines(insert, final_newline))


def edit(path: str, base: BlobLike, hunks: Iterable[Any]) -> Op:
    """Replace line ranges of ``path``, whose content must still be blob ``base`` (32 bytes or
    64 hex characters: the ``blob`` that a read answers).

    ``hunks`` are :func:`hunk` results (taken as they are), ``{start, remove, insert}`` maps or
    ``(start, remove, insert)`` tuples (normalised by :func:`hunk`); they must be in ascending
    order and must not overlap (checked here, so the mistake is caught before sending).
    """
    normalised: List[Hunk] = []
    previous_end = 0
    for item in hunks:
        if isinstance(item, Hunk):
            h = item
        elif isinstance(item, dict):
            h = hunk(item["start"], item["remove"], item.get("insert", ()))
        else:
            h = hunk(*item)
        if normalised and h["start"] < previous_end:
            raise ValueError(f"hunk at line {h['start']} overlaps or precedes the previous one")
        previous_end = h["start"] + h["remove"]
        normalised.append(h)
    if not normalised:
        raise ValueError("an edit holds at least one hunk")
    return {"op": "edit", "path": path, "base": node_id(base), "hunks": [dict(h) for h in normalised]}


def patch(
    ops: Iterable[Op], id: Optional[str] = None, author: str = "agent", ts: int = 0
) -> Patch:
    """A patch: ``ops`` applied in order, whole or not at all. ``id`` is unique per SWS (a
    patch id applied twice is applied once); a random one is made if none is given."""
    ops = list(ops)
    if not ops:
        raise ValueError("a patch holds at least one operation")
    return {
        "id": id if id is not None else uuid.uuid4().hex,
        "author": author,
        "ts": int(ts),
        "ops": ops,
    }


def blob_id(content: Union[bytes, str]) -> bytes:
    """The id the kernel gives ``content`` (up to :data:`INLINE_MAX` bytes): BLAKE3 of the
    canonical CBOR node ``{type: "blob", clock: 0, parents: [], payload: {data, size},
    metadata: {}}``. Larger content is cut by FastCDC into chunks; take its id from a read's
    ``blob`` instead."""
    data = _content(content)
    if len(data) > INLINE_MAX:
        raise ValueError(
            f"content over {INLINE_MAX} bytes is chunked: use the blob id a read answers"
        )
    try:
        import blake3  # type: ignore
    except ImportError as error:  # pragma: no cover - declared as a dependency
        raise RuntimeError("blob_id needs the blake3 package") from error
    node = {
        "type": "blob",
        "clock": 0,
        "parents": [],
        "payload": {"data": data, "size": len(data)},
        "metadata": {},
    }
    return blake3.blake3(cbor.encode(node)).digest()
