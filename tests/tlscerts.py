"""Throw-away TLS material for tests: a certificate authority and server certificates it
signs, written as PEM files a server (`mariadbd --ssl-ca/--ssl-cert/--ssl-key`) and a
client (`ssl_ca=` in a DSN) can read.

Made with `cryptography` (already a dependency, for MySQL 8's RSA password exchange), so
no `openssl` binary is needed. Keys are EC P-256: quick to generate, accepted by OpenSSL's
default security level. A server certificate names where it is served by its subject
alternative names (`hosts`: IP addresses or DNS names), which is what `verify_identity`
checks; a certificate that names only 127.0.0.1 fails that check for `localhost`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

VALIDITY = timedelta(days=2)
"""Long enough for any test run, short enough that a leaked file is worthless."""


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.TraditionalOpenSSL,
                                       serialization.NoEncryption()))
    return path


@dataclass(frozen=True, slots=True)
class ServerFiles:
    """The files a TLS server needs: its certificate, its key, and the CA's certificate."""

    cert: Path
    key: Path
    ca: Path


class CertificateAuthority:
    """A self-signed CA in `directory` (its certificate is `ca.pem`)."""

    def __init__(self, directory: Path, name: str = "bkcmdb test CA") -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.name = name
        self._key = _key()
        now = datetime.now(UTC)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(name)).issuer_name(_name(name))
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self.path = self.directory / f"{self._stem()}-ca.pem"
        self.path.write_bytes(self.certificate.public_bytes(serialization.Encoding.PEM))

    def _stem(self) -> str:
        return "".join(c if c.isalnum() else "-" for c in self.name.lower())

    def issue(self, common: str, hosts: tuple[str, ...]) -> ServerFiles:
        """A server certificate for `hosts` (IPs or DNS names), signed by this CA."""
        key = _key()
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(common)).issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + VALIDITY)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(self._key, hashes.SHA256())
        )
        stem = "".join(c if c.isalnum() else "-" for c in common.lower())
        cert_path = self.directory / f"{stem}-cert.pem"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return ServerFiles(cert=cert_path, key=_write_key(key, self.directory / f"{stem}-key.pem"),
                           ca=self.path)
