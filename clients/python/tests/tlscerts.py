"""Test certificates for the TLS tests and the benchmark: a CA, a daemon certificate for
127.0.0.1/localhost and an agent (client) certificate, written as PEM files with the
`cryptography` package (no openssl binary needed).

    python3 tlscerts.py DIR      # writes DIR/{ca,daemon,agent}.pem and DIR/{daemon,agent}.key
"""

from __future__ import annotations

import datetime
import ipaddress
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(key, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    path.chmod(0o600)


def make_certs(out: Path, ca_cn: str = "jit test CA") -> Path:
    """Writes the CA and two certificates it signs into ``out``; returns ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    valid = dict(
        not_valid_before=now - datetime.timedelta(days=1),
        not_valid_after=now + datetime.timedelta(days=30),
    )
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name(ca_cn))
        .issuer_name(_name(ca_cn))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid["not_valid_before"])
        .not_valid_after(valid["not_valid_after"])
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    (out / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for stem, cn, names in [
        ("daemon", "localhost", [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
        ("agent", "agent.test", [x509.DNSName("agent.test")]),
    ]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(_name(ca_cn))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(valid["not_valid_before"])
            .not_valid_after(valid["not_valid_after"])
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        (out / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key, out / f"{stem}.key")
    return out


def daemon_config(certs: Path) -> str:
    """A `jit up --zenoh-config` file's JSON5: listen with mutual TLS, clients from the CA."""
    return (
        "{ transport: { link: { tls: {\n"
        f'  root_ca_certificate: "{certs / "ca.pem"}",\n'
        f'  listen_certificate: "{certs / "daemon.pem"}",\n'
        f'  listen_private_key: "{certs / "daemon.key"}",\n'
        "  enable_mtls: true,\n"
        "} } } }\n"
    )


if __name__ == "__main__":
    target = make_certs(Path(sys.argv[1]))
    (target / "plane.json5").write_text(daemon_config(target))
