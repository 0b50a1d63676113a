"""Certificates made on the fly for TLS tests (the `cryptography` package; nothing checked in).

    pki = make_pki(tmp_path)
    ServerProcess(["--model-dir", ..., *server_security_flags(pki, mutual=True, token_file=tokens)])
    MnistClient(target, tls=TlsConfig(root_ca=pki.ca_cert, client_cert=pki.client_cert,
                                      client_key=pki.client_key))

A second, unrelated CA signs `rogue_client_*`: a well-formed client certificate the server must refuse.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Pki:
    ca_cert: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str
    rogue_ca_cert: str
    rogue_client_cert: str
    rogue_client_key: str


def server_security_flags(pki: Pki, *, mutual: bool = False, token_file: Path | None = None) -> list[str]:
    """mnist-server's flags for TLS with `pki`'s server certificate; `mutual`: client certificates signed
    by its CA required; `token_file`: bearer tokens required."""
    flags = ["--tls-cert", pki.server_cert, "--tls-key", pki.server_key]
    if mutual:
        flags += ["--tls-client-ca", pki.ca_cert]
    if token_file is not None:
        flags += ["--auth-token-file", str(token_file)]
    return flags


def write_token_file(directory: Path, text: str) -> Path:
    """A --auth-token-file in `directory` holding `text` (token lines, optionally limited to services)."""
    path = Path(directory) / "tokens"
    path.write_text(text)
    return path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(
    subject: str, key, issuer_name: x509.Name, issuer_key, *, ca: bool, usage=None, hosts: tuple[str, ...] = ()
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if hosts:
        names = [x509.IPAddress(ipaddress.ip_address(h)) if h[0].isdigit() else x509.DNSName(h) for h in hosts]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(directory: Path, stem: str, cert: x509.Certificate, key=None) -> tuple[str, str | None]:
    cert_path = directory / f"{stem}.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is None:
        return str(cert_path), None
    key_path = directory / f"{stem}.key"
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_path), str(key_path)


def _authority(common_name: str):
    key = ec.generate_private_key(ec.SECP256R1())
    return key, _certificate(common_name, key, _name(common_name), key, ca=True)


def make_pki(directory: Path) -> Pki:
    """A CA, a server certificate for 127.0.0.1/localhost, a client certificate, and a rogue pair."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca = _authority("mnist-serving test CA")
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _certificate(
        "localhost",
        server_key,
        ca.subject,
        ca_key,
        ca=False,
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        hosts=("127.0.0.1", "localhost"),
    )
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _certificate(
        "test-client", client_key, ca.subject, ca_key, ca=False, usage=ExtendedKeyUsageOID.CLIENT_AUTH
    )
    rogue_ca_key, rogue_ca = _authority("someone else's CA")
    rogue_key = ec.generate_private_key(ec.SECP256R1())
    rogue = _certificate(
        "test-client", rogue_key, rogue_ca.subject, rogue_ca_key, ca=False, usage=ExtendedKeyUsageOID.CLIENT_AUTH
    )
    ca_cert, _ = _write(directory, "ca", ca)
    server_cert, server_key_path = _write(directory, "server", server, server_key)
    client_cert, client_key_path = _write(directory, "client", client, client_key)
    rogue_ca_cert, _ = _write(directory, "rogue-ca", rogue_ca)
    rogue_cert, rogue_key_path = _write(directory, "rogue-client", rogue, rogue_key)
    return Pki(
        ca_cert, server_cert, server_key_path, client_cert, client_key_path, rogue_ca_cert, rogue_cert, rogue_key_path
    )
