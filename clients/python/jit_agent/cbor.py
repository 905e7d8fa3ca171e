"""Canonical CBOR: the one encoding every plane message and answer uses.

The encoder writes RFC 8949 §4.2.1 *core deterministic* CBOR for the subset JIT uses: text,
byte strings, unsigned and negative integers (64-bit), booleans, null, arrays and maps, with
definite lengths, the shortest integer heads, and map keys sorted by the bytewise order of
their encodings. Floats, tags and anything else are refused with :class:`CborError`: the
daemon would refuse them too (as ``malformed``).

The decoder reads whatever CBOR the daemon answers (it is canonical) through ``cbor2`` and
returns plain Python values: ``dict``, ``list``, ``str``, ``bytes``, ``int``, ``bool`` and
``None``.
"""

from __future__ import annotations

from typing import Any

import cbor2

__all__ = ["CborError", "Raw", "decode", "encode"]

_MAX_UINT = (1 << 64) - 1


class CborError(ValueError):
    """A value cannot be encoded canonically, or bytes do not decode."""


class Raw(bytes):
    """Bytes that are already one canonical CBOR item: :func:`encode` writes them as they are
    (so a payload encoded once can be placed in both the signing bytes and the envelope)."""


def _head(major: int, value: int, out: bytearray) -> None:
    """Appends the shortest head for major type ``major`` with argument ``value``."""
    kind = major << 5
    if value < 24:
        out.append(kind | value)
    elif value <= 0xFF:
        out.append(kind | 24)
        out.append(value)
    elif value <= 0xFFFF:
        out.append(kind | 25)
        out += value.to_bytes(2, "big")
    elif value <= 0xFFFFFFFF:
        out.append(kind | 26)
        out += value.to_bytes(4, "big")
    elif value <= _MAX_UINT:
        out.append(kind | 27)
        out += value.to_bytes(8, "big")
    else:
        raise CborError(f"integer argument {value} does not fit 64 bits")


# Encoded text map keys, reused: the same few keys ("op", "path", "content", …) recur in
# every message.
_KEYS: dict = {}
_KEYS_MAX = 4096


def _text(value: str) -> bytes:
    data = value.encode("utf-8")
    out = bytearray()
    _head(3, len(data), out)
    out += data
    return bytes(out)


def _key(key) -> bytes:
    if type(key) is str:
        encoded = _KEYS.get(key)
        if encoded is None:
            encoded = _text(key)
            if len(_KEYS) < _KEYS_MAX:
                _KEYS[key] = encoded
        return encoded
    out = bytearray()
    _encode_into(key, out, 0)
    return bytes(out)


def _first(entry):
    return entry[0]


def _encode_into(value: Any, out: bytearray, depth: int) -> None:
    if depth > 64:
        raise CborError("nesting deeper than 64 levels")
    kind = type(value)
    if kind is str:
        data = value.encode("utf-8")
        _head(3, len(data), out)
        out += data
    elif kind is dict:
        entries = [(_key(key), item) for key, item in value.items()]
        if len(entries) > 1:
            entries.sort(key=_first)
        for (first, _), (second, _) in zip(entries, entries[1:]):
            if first == second:
                raise CborError("duplicate map key")
        _head(5, len(entries), out)
        for encoded_key, item in entries:
            out += encoded_key
            _encode_into(item, out, depth + 1)
    elif kind is int:
        if value >= 0:
            _head(0, value, out)
        else:
            _head(1, -1 - value, out)
    elif kind is bytes or kind is bytearray or kind is memoryview:
        data = bytes(value)
        _head(2, len(data), out)
        out += data
    elif kind is Raw:
        out += value
    elif kind is list or kind is tuple:
        _head(4, len(value), out)
        for item in value:
            _encode_into(item, out, depth + 1)
    elif value is None:
        out.append(0xF6)
    elif value is True:
        out.append(0xF5)
    elif value is False:
        out.append(0xF4)
    elif isinstance(value, float):
        raise CborError("floats are not part of JIT's canonical CBOR")
    # Subclasses (an IntEnum, a str or dict subclass) go the slow way.
    elif isinstance(value, int):
        _encode_into(int(value), out, depth)
    elif isinstance(value, str):
        _encode_into(str(value), out, depth)
    elif isinstance(value, dict):
        _encode_into(dict(value), out, depth)
    elif isinstance(value, (list, tuple)):
        _encode_into(list(value), out, depth)
    elif isinstance(value, (bytes, bytearray)):
        _encode_into(bytes(value), out, depth)
    else:
        raise CborError(f"cannot encode a {type(value).__name__} as canonical CBOR")


def encode(value: Any) -> bytes:
    """The canonical CBOR encoding of ``value`` (RFC 8949 §4.2.1, JIT's subset)."""
    out = bytearray()
    _encode_into(value, out, 0)
    return bytes(out)


def decode(data: bytes) -> Any:
    """Decodes one CBOR item (the daemon's answers and log records)."""
    try:
        return cbor2.loads(bytes(data))
    except Exception as error:  # cbor2 raises several types
        raise CborError(f"bad CBOR: {error}") from error
