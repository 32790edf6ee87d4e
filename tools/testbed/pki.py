"""The cluster's PKI, made with `cryptography`: one CA, serving certs, client certs, SA keys.

Kubernetes authenticates components by client certificate: the subject's CN is the user and
its O the groups (system:masters for the admin, system:nodes for the kubelet). Keys are EC
P-256: quick to make, accepted by every component.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from testbed.errors import TestbedError

VALIDITY = dt.timedelta(days=365)


@dataclass(frozen=True)
class CertPair:
    cert: Path
    key: Path


def _write_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, path: Path) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def _name(cn: str, orgs: tuple[str, ...] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    attrs += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    return x509.Name(attrs)


class PKI:
    """All certificates of one cluster, in one directory; made once, reused by `up`."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.ca = CertPair(directory / "ca.crt", directory / "ca.key")

    def ensure_ca(self) -> None:
        if self.ca.cert.exists() and self.ca.key.exists():
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        name = _name("podkit-testbed-ca")
        cert = (x509.CertificateBuilder()
                .subject_name(name).issuer_name(name)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + VALIDITY * 10)
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                             crl_sign=True, content_commitment=False,
                                             key_encipherment=False, data_encipherment=False,
                                             key_agreement=False, encipher_only=False,
                                             decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                               critical=False)
                .sign(key, hashes.SHA256()))
        _write_key(key, self.ca.key)
        self.ca.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, stem: str, cn: str, *, orgs: tuple[str, ...] = (),
              server_names: tuple[str, ...] = (), client: bool = True) -> CertPair:
        """Issue `<stem>.crt`/`<stem>.key` signed by the CA, unless they already exist.

        `server_names` are DNS names or IP addresses; when given, the cert also serves TLS.
        """
        pair = CertPair(self.dir / f"{stem}.crt", self.dir / f"{stem}.key")
        if pair.cert.exists() and pair.key.exists():
            return pair
        self.ensure_ca()
        ca_key = serialization.load_pem_private_key(self.ca.key.read_bytes(), password=None)
        if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
            raise TestbedError(f"{self.ca.key} is not the EC key this testbed makes; remove "
                               f"{self.dir} and start the testbed again")
        ca_cert = x509.load_pem_x509_certificate(self.ca.cert.read_bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
        if server_names:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        builder = (x509.CertificateBuilder()
                   .subject_name(_name(cn, orgs)).issuer_name(ca_cert.subject)
                   .public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=5))
                   .not_valid_after(now + VALIDITY)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False,
                                                key_cert_sign=False, crl_sign=False,
                                                content_commitment=False, data_encipherment=False,
                                                key_agreement=False, encipher_only=False,
                                                decipher_only=False), critical=True)
                   .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                       ca_key.public_key()), critical=False))
        if server_names:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([_general_name(n) for n in server_names]),
                critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        _write_key(key, pair.key)
        pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return pair

    def service_account_key(self) -> CertPair:
        """The key pair that signs service-account tokens (`cert` holds the public key)."""
        pair = CertPair(self.dir / "sa.pub", self.dir / "sa.key")
        if pair.cert.exists() and pair.key.exists():
            return pair
        self.dir.mkdir(parents=True, exist_ok=True)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _write_key(key, pair.key)
        pair.cert.write_bytes(key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        return pair


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def kubeconfig(path: Path, *, server: str, ca: Path, client: CertPair, user: str) -> Path:
    """Write a kubeconfig that points to `server` and names files instead of inlining them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "apiVersion: v1\nkind: Config\n"
        "clusters:\n- name: podkit\n  cluster:\n"
        f"    server: {server}\n    certificate-authority: {ca}\n"
        f"users:\n- name: {user}\n  user:\n"
        f"    client-certificate: {client.cert}\n    client-key: {client.key}\n"
        f"contexts:\n- name: podkit\n  context:\n    cluster: podkit\n    user: {user}\n"
        "current-context: podkit\n")
    path.chmod(0o600)
    return path
