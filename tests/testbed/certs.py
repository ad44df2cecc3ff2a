"""A throwaway certificate authority and a localhost server certificate.

Tests must never lean on public trust: every TLS client in the suite trusts
exactly this CA, and the system store must reject the leaf, which proves
deskctl really uses the CA file / SSL context it was given.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import shutil
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ._proc import make_base_dir


@dataclass(frozen=True)
class CertBundle:
    """Paths to the PEM files of one test CA and its localhost leaf."""

    directory: Path
    ca_pem: Path
    fullchain_pem: Path
    server_key: Path

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts only the test CA (hostname checks stay on)."""
        return ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca_pem))

    def server_context(self) -> ssl.SSLContext:
        """A server context presenting the leaf, for Python servers (the SMTP relay)."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(self.fullchain_pem), str(self.server_key))
        return ctx

    def copy_to(self, directory: Path) -> CertBundle:
        """Copy the files into ``directory`` (e.g. a server's own temp dir).

        Servers that drop privileges need the files somewhere their account
        can read; copying keeps the original bundle private to root.
        """
        directory.mkdir(parents=True, exist_ok=True)
        paths = [
            Path(shutil.copy2(p, directory / p.name))
            for p in (self.ca_pem, self.fullchain_pem, self.server_key)
        ]
        return CertBundle(directory, *paths)

    def remove(self) -> None:
        """Delete the directory holding the bundle."""
        shutil.rmtree(self.directory, ignore_errors=True)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "deskctl test bed"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def make_certs(directory: Path | None = None) -> CertBundle:
    """Create a fresh CA and a leaf for ``localhost`` / ``127.0.0.1``.

    EC P-256 keys keep generation in the low milliseconds.  The leaf is
    valid from a day ago (clock skew) for a week, which outlives any
    session.  Writes ``ca.pem``, ``fullchain.pem`` (leaf + CA) and
    ``server.key`` (mode 0600) into ``directory`` or a new /tmp dir.
    """
    if directory is None:
        directory = make_base_dir("dk-certs-")
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    not_before, not_after = now - dt.timedelta(days=1), now + dt.timedelta(days=7)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("deskctl test CA")
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    ca_pem = directory / "ca.pem"
    fullchain = directory / "fullchain.pem"
    server_key = directory / "server.key"
    ca_pem.write_bytes(_pem(ca_cert))
    fullchain.write_bytes(_pem(leaf_cert) + _pem(ca_cert))
    server_key.touch(mode=0o600)
    server_key.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return CertBundle(directory, ca_pem, fullchain, server_key)
