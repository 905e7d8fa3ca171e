"""Signed envelopes and agent keys.

An envelope is the canonical CBOR map ``{sender, ts, msg_id, payload, sig}``; ``sig`` is the
ed25519 signature over the canonical CBOR of ``{key, msg_id, payload, sender, ts}`` where
``key`` is the Zenoh key expression *without* the namespace prefix — binding the signature to
the topic, so a patch signed for one SWS cannot be replayed onto another (``docs/plane.md``,
"The envelope").

Keys are ed25519 seeds: 32 bytes, stored in a key file as 64 hex characters (the format
``jit agent new`` writes to ``.jit/agents/NAME.key``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from . import cbor

__all__ = [
    "Envelope",
    "KeyLike",
    "MAX_MESSAGE",
    "MAX_MSG_ID",
    "generate_key",
    "load_key",
    "public_key_bytes",
    "public_key_hex",
    "seed_hex",
    "signing_bytes",
    "write_key_file",
]

#: Largest envelope the plane accepts, in bytes (larger ones are refused ``too_large``).
MAX_MESSAGE = 4 << 20
#: Longest ``msg_id``, in bytes.
MAX_MSG_ID = 128

KeyLike = Union[Ed25519PrivateKey, bytes, bytearray, str, os.PathLike]

_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


def load_key(key: KeyLike) -> Ed25519PrivateKey:
    """An ed25519 signing key from what the caller has:

    - an ``Ed25519PrivateKey``;
    - 32 raw seed bytes;
    - a 64-hex-character seed (``str``, or the same as ASCII ``bytes``);
    - the path (``str`` or ``Path``) of a key file holding the seed as 64 hex characters.
    """
    if isinstance(key, Ed25519PrivateKey):
        return key
    if isinstance(key, (bytes, bytearray)):
        raw = bytes(key)
        if len(raw) == 32:
            return Ed25519PrivateKey.from_private_bytes(raw)
        text = raw.decode("ascii", errors="replace").strip()
        if _HEX64.match(text):
            return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(text))
        raise ValueError("a key is 32 seed bytes or 64 hex characters")
    if isinstance(key, str) and _HEX64.match(key.strip()) and not os.path.exists(key):
        return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(key.strip()))
    if isinstance(key, (str, os.PathLike)):
        text = Path(key).read_text().strip()
        if not _HEX64.match(text):
            raise ValueError(f"{key}: a key file holds the 32-byte seed as 64 hex characters")
        return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(text))
    raise TypeError(f"cannot make a signing key from a {type(key).__name__}")


def generate_key() -> Ed25519PrivateKey:
    """A fresh ed25519 key."""
    return Ed25519PrivateKey.generate()


def seed_hex(key: KeyLike) -> str:
    """The key's 32-byte seed as 64 hex characters (the key file format)."""
    raw = load_key(key).private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return raw.hex()


def write_key_file(key: KeyLike, path: Union[str, os.PathLike]) -> Path:
    """Writes the key's seed as 64 hex characters to ``path``, mode 0600 (as ``jit agent new``
    does); returns the path."""
    path = Path(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(seed_hex(key) + "\n")
    os.chmod(path, 0o600)
    return path


def public_key_bytes(key: KeyLike) -> bytes:
    """The 32-byte public key of a signing key (or of an ``Ed25519PublicKey``)."""
    if isinstance(key, Ed25519PublicKey):
        public = key
    else:
        public = load_key(key).public_key()
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)


def public_key_hex(key: KeyLike) -> str:
    """The public key as 64 hex characters (what ``jit agent add NAME PUBKEY`` takes)."""
    return public_key_bytes(key).hex()


def signing_bytes(key: str, sender: str, ts: int, msg_id: str, payload: Any) -> bytes:
    """The bytes the signature covers: canonical CBOR of ``{key, msg_id, payload, sender, ts}``
    with ``key`` the key expression without namespace. ``payload`` may be a
    :class:`jit_agent.cbor.Raw` (already encoded)."""
    return cbor.encode(
        {"key": key, "msg_id": msg_id, "payload": payload, "sender": sender, "ts": ts}
    )


@dataclass(frozen=True)
class Envelope:
    """A signed plane message, ready to send (``key`` is the topic without namespace)."""

    key: str
    sender: str
    ts: int
    msg_id: str
    payload: Any
    sig: bytes
    #: The payload's canonical CBOR, when already encoded (set by :meth:`signed`).
    encoded_payload: Optional[bytes] = field(default=None, repr=False, compare=False)

    @classmethod
    def signed(
        cls, key: str, sender: str, ts: int, msg_id: str, payload: Any, signer: KeyLike
    ) -> "Envelope":
        """Builds and signs an envelope for topic ``key``."""
        if not 1 <= len(msg_id.encode("utf-8")) <= MAX_MSG_ID:
            raise ValueError("msg_id must be 1 to 128 bytes")
        if ts < 0:
            raise ValueError("ts is an unsigned integer")
        # The payload is encoded once, for both the signing bytes and the envelope.
        encoded = payload if isinstance(payload, cbor.Raw) else cbor.Raw(cbor.encode(payload))
        sig = load_key(signer).sign(signing_bytes(key, sender, ts, msg_id, encoded))
        return cls(key, sender, ts, msg_id, payload, sig, encoded)

    def encode(self) -> bytes:
        """The envelope's canonical CBOR: the exact bytes sent (and resent on every retry)."""
        payload = self.encoded_payload if self.encoded_payload is not None else self.payload
        return cbor.encode(
            {
                "sender": self.sender,
                "ts": self.ts,
                "msg_id": self.msg_id,
                "payload": payload,
                "sig": self.sig,
            }
        )

    def verify(self, public: Union[bytes, Ed25519PublicKey]) -> bool:
        """Whether ``sig`` is ``public``'s signature over this envelope on ``key``."""
        if not isinstance(public, Ed25519PublicKey):
            public = Ed25519PublicKey.from_public_bytes(bytes(public))
        try:
            public.verify(
                self.sig, signing_bytes(self.key, self.sender, self.ts, self.msg_id, self.payload)
            )
            return True
        except Exception:
            return False
