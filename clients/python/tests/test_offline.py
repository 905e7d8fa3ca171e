"""What needs no daemon: canonical CBOR against the kernel's golden vectors, envelope signing,
patch builders, and the error table against docs/codes.md."""

from __future__ import annotations

import re
from pathlib import Path

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import jit_agent
from jit_agent import cbor, errors
from jit_agent.envelope import Envelope, load_key, public_key_hex, seed_hex, signing_bytes
from jit_agent.patches import blob_id, edit, hunk, patch, put, put_blob

REPO = Path(__file__).resolve().parents[3]
GOLDEN = REPO / "kernel" / "tests" / "golden" / "nodes.txt"


def golden():
    for line in GOLDEN.read_text().splitlines():
        name, node_id, hex_bytes = line.split()
        yield name, node_id, bytes.fromhex(hex_bytes)


def test_the_encoder_reproduces_every_golden_node_byte_for_byte():
    import blake3

    count = 0
    for name, node_id, data in golden():
        assert cbor.encode(cbor.decode(data)) == data, name
        assert blake3.blake3(data).hexdigest() == node_id, name
        count += 1
    assert count >= 10


def test_blob_id_is_the_golden_inline_blobs_id():
    ids = {name: node_id for name, node_id, _ in golden()}
    assert blob_id(b"hello\n").hex() == ids["blob-hello"]
    assert blob_id("hello\n") == blob_id(b"hello\n")
    with pytest.raises(ValueError):
        blob_id(b"x" * (64 * 1024 + 1))


@pytest.mark.parametrize(
    "value, encoded",
    [
        (0, "00"),
        (23, "17"),
        (24, "1818"),
        (255, "18ff"),
        (256, "190100"),
        (65535, "19ffff"),
        (65536, "1a00010000"),
        (2**32 - 1, "1affffffff"),
        (2**32, "1b0000000100000000"),
        (2**64 - 1, "1bffffffffffffffff"),
        (-1, "20"),
        (-25, "3818"),
        (-(2**64), "3bffffffffffffffff"),
        (True, "f5"),
        (False, "f4"),
        (None, "f6"),
        ("", "60"),
        ("a" * 24, "7818" + "61" * 24),
        (b"\x01\x02", "420102"),
        ([1, [2]], "82018102"),
        ({}, "a0"),
    ],
)
def test_shortest_heads(value, encoded):
    assert cbor.encode(value).hex() == encoded
    assert cbor.decode(bytes.fromhex(encoded)) == value


def test_map_keys_sort_by_their_encoded_bytes():
    # Bytewise order of encodings: shorter text first, then lexicographic; ints before text.
    value = {"ts": 1, "sig": b"", "key": "k", "sender": "s", "msg_id": "m", "payload": {}, 10: 0, "b": 1}
    data = cbor.encode(value)
    keys = list(cbor2.loads(data).keys())
    assert keys == [10, "b", "ts", "key", "sig", "msg_id", "sender", "payload"]
    # For the text keys JIT uses, cbor2's RFC 7049 canonical order (length first) agrees.
    text_only = {k: v for k, v in value.items() if isinstance(k, str)}
    assert cbor.encode(text_only) == cbor2.dumps(text_only, canonical=True)


@pytest.mark.parametrize("bad", [1.5, float("nan"), {1, 2}, object(), 2**64, -(2**64) - 1])
def test_what_canonical_cbor_cannot_hold_is_refused(bad):
    with pytest.raises(cbor.CborError):
        cbor.encode(bad)


def test_an_envelope_signs_its_key_and_fields_and_encodes_canonically():
    key = Ed25519PrivateKey.from_private_bytes(bytes([7]) * 32)
    payload = {"a": 1}
    envelope = Envelope.signed("jit/kernel/create", "agent", 3, "m1", payload, key)
    # The signing bytes are the canonical map {key, msg_id, payload, sender, ts}.
    expected = cbor2.dumps(
        {"key": "jit/kernel/create", "msg_id": "m1", "payload": payload, "sender": "agent", "ts": 3},
        canonical=True,
    )
    assert signing_bytes("jit/kernel/create", "agent", 3, "m1", payload) == expected
    assert envelope.verify(key.public_key())
    other = Envelope("jit/sws/00/commit", "agent", 3, "m1", payload, envelope.sig)
    assert not other.verify(key.public_key()), "the signature binds the key"
    decoded = cbor2.loads(envelope.encode())
    assert decoded == {"sender": "agent", "ts": 3, "msg_id": "m1", "payload": payload, "sig": envelope.sig}
    assert envelope.encode() == cbor2.dumps(decoded, canonical=True)
    with pytest.raises(ValueError):
        Envelope.signed("k", "agent", 1, "", payload, key)
    with pytest.raises(ValueError):
        Envelope.signed("k", "agent", 1, "x" * 129, payload, key)


def test_keys_load_from_seed_bytes_hex_and_files(tmp_path):
    seed = bytes(range(32))
    path = tmp_path / "a.key"
    path.write_text(seed.hex() + "\n")
    public = public_key_hex(seed)
    assert public_key_hex(seed.hex()) == public
    assert public_key_hex(path) == public
    assert public_key_hex(str(path)) == public
    assert seed_hex(load_key(path)) == seed.hex()
    written = jit_agent.write_key_file(seed, tmp_path / "b.key")
    assert written.stat().st_mode & 0o777 == 0o600
    assert public_key_hex(written) == public
    with pytest.raises(ValueError):
        load_key(b"short")


def test_hunks_carry_their_own_newlines():
    assert hunk(0, 1, ["a", "b\n", "c\nd"])["insert"] == ["a\n", "b\n", "c\n", "d\n"]
    assert hunk(2, 0, "x\ny\n")["insert"] == ["x\n", "y\n"]
    assert hunk(2, 0, "x\ny", final_newline=False)["insert"] == ["x\n", "y"]
    assert hunk(3, 2)["insert"] == []
    with pytest.raises(ValueError):
        hunk(-1, 0, "x")


def test_edit_checks_its_hunks_and_takes_a_hex_or_binary_base():
    base = "ab" * 32
    op = edit("f.txt", base, [hunk(0, 1, "a"), (2, 1, ["b"]), {"start": 5, "remove": 0, "insert": ["c"]}])
    assert op == {
        "op": "edit",
        "path": "f.txt",
        "base": bytes.fromhex(base),
        "hunks": [
            {"start": 0, "remove": 1, "insert": ["a\n"]},
            {"start": 2, "remove": 1, "insert": ["b\n"]},
            {"start": 5, "remove": 0, "insert": ["c\n"]},
        ],
    }
    with pytest.raises(ValueError, match="overlaps"):
        edit("f.txt", base, [hunk(2, 2, "a"), hunk(3, 0, "b")])
    with pytest.raises(ValueError):
        edit("f.txt", "abcd", [hunk(0, 0, "a")])
    assert put_blob("x", base)["blob"] == bytes.fromhex(base)


def test_patches_encode_as_the_kernel_expects():
    p = patch([put("a.txt", "hi\n"), put("b.sh", b"#!/bin/sh\n", executable=True)], id="p1", author="me")
    assert p == {
        "id": "p1",
        "author": "me",
        "ts": 0,
        "ops": [
            {"op": "put", "path": "a.txt", "content": b"hi\n"},
            {"op": "put", "path": "b.sh", "content": b"#!/bin/sh\n", "executable": True},
        ],
    }
    cbor.encode(p)
    assert len(patch([put("x", "")])["id"]) == 32, "a random id when none is given"
    with pytest.raises(ValueError):
        patch([])


def documented_codes(section_titles):
    """The codes of the tables under the given headings of docs/codes.md."""
    text = (REPO / "docs" / "codes.md").read_text()
    codes = []
    for section in re.split(r"^## ", text, flags=re.M)[1:]:
        title, _, body = section.partition("\n")
        if any(title.startswith(t) for t in section_titles):
            codes += re.findall(r"^\| `([a-z_]+)` \|", body, flags=re.M)
    return codes


def test_every_code_the_plane_can_answer_has_its_own_class():
    codes = documented_codes(
        [
            "The message plane's refusals",
            "The kernel: input refused",
            "The kernel: the environment failed",
            "The RPC's own refusals",
            "The plane's client side",
        ]
    )
    assert len(codes) > 50
    for code in codes:
        cls = errors.error_class(code)
        assert cls is not errors.JitError, f"{code} has no class"
        error = errors.error_for(code, "why", {"x": 1})
        assert isinstance(error, errors.JitError) and error.code == code
        assert error.message == "why" and error.details == {"x": 1}
    for code in documented_codes(["The message plane's refusals"]):
        assert issubclass(errors.error_class(code), errors.PlaneRefusal)


def test_unknown_codes_still_raise_jit_errors_and_conflicts_are_exposed():
    error = errors.error_for("brand_new_code", "m")
    assert type(error) is errors.JitError and error.code == "brand_new_code"
    conflict = errors.error_for("merge_conflict", "m", [{"path": "a", "kind": "text"}])
    assert isinstance(conflict, errors.MergeConflict)
    assert conflict.conflicts == [{"path": "a", "kind": "text"}]
    assert errors.error_for("merge_conflict", "m", {"conflicts": [1]}).conflicts == [1]
    assert isinstance(errors.error_for("name_taken"), errors.NameTaken)


def test_tls_options_go_under_transport_link_tls(tmp_path):
    import json

    from jit_agent import TlsOptions, make_config

    config = make_config(
        ["tls/127.0.0.1:7448"],
        TlsOptions(
            root_ca_certificate=tmp_path / "ca.pem",
            connect_certificate=tmp_path / "agent.pem",
            connect_private_key=tmp_path / "agent.key",
        ),
    )
    tls = json.loads(config.get_json("transport/link/tls"))
    assert tls["root_ca_certificate"] == str(tmp_path / "ca.pem")
    assert tls["connect_certificate"] == str(tmp_path / "agent.pem")
    assert tls["connect_private_key"] == str(tmp_path / "agent.key")
    assert tls["enable_mtls"] is True
    assert json.loads(config.get_json("mode")) == "client"
    assert json.loads(config.get_json("scouting/multicast/enabled")) is False
    assert json.loads(config.get_json("connect/endpoints")) == ["tls/127.0.0.1:7448"]
    only_ca = json.loads(make_config(["tls/h:1"], TlsOptions(root_ca_certificate="ca.pem")).get_json("transport/link/tls"))
    assert only_ca["root_ca_certificate"] == "ca.pem" and only_ca["enable_mtls"] is None
