"""A private CA and the certificates signed by it (EC P-256), plus checks that a cert matches its key."""
import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from deployment import naming
from ops.config.envfile import rel, write_private
from ops.core.errors import OpsError

CA_DAYS = 3650
LEAF_DAYS = 825
SERVER_SANS = [naming.REDIS_SERVICE, "localhost", "127.0.0.1"]
# Each server certificate's names (its CN is the service). PostgreSQL's clients verify `postgres` (sslmode=verify-full,
# the host they connect to on their network); nothing reaches it on loopback (not published, the socket for checks).
SERVER_SANS_OF = {naming.REDIS_SERVICE: SERVER_SANS, naming.POSTGRES_SERVICE: [naming.POSTGRES_SERVICE]}


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "tenantstack"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _key_pem(key) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _cert_pem(cert) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _builder(subject: str, issuer: x509.Name, public_key, days: int) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def make_ca(cert_path: Path, key_path: Path, cn: str = "tenantstack private CA") -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _builder(cn, _name(cn), key.public_key(), CA_DAYS)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(key, hashes.SHA256())
    )
    write_private(key_path, _key_pem(key))
    write_private(cert_path, _cert_pem(cert), mode=0o644)


def make_leaf(ca_cert: Path, ca_key: Path, cert_path: Path, key_path: Path, cn: str, *, server: bool = False) -> None:
    """A certificate for a client (clientAuth) or for the server (serverAuth + clientAuth, SANs)."""
    ca = x509.load_pem_x509_certificate(ca_cert.read_bytes())
    signer = serialization.load_pem_private_key(ca_key.read_bytes(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH] + ([ExtendedKeyUsageOID.SERVER_AUTH] if server else [])
    builder = (
        _builder(cn, ca.subject, key.public_key(), LEAF_DAYS)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, True, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False)
    )
    if server:
        sans = [x509.IPAddress(ipaddress.ip_address(s)) if s[0].isdigit() else x509.DNSName(s)
                for s in SERVER_SANS_OF.get(cn, SERVER_SANS)]
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(signer, hashes.SHA256())
    write_private(key_path, _key_pem(key))
    write_private(cert_path, _cert_pem(cert), mode=0o644)


def check_pair(cert_path: Path, key_path: Path, ca_path: Path | None = None) -> None:
    """Raise one line if a file is missing/unreadable, the cert does not match its key, or was not signed by the CA."""
    for path in (cert_path, key_path) + ((ca_path,) if ca_path else ()):
        if not path.exists():
            raise OpsError(f"{rel(path)} is missing: run `./invoke init` to generate it")
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise OpsError(f"{rel(cert_path)} or {rel(key_path)} is unreadable or not PEM ({exc}): "
                       "run `./invoke init --rotate`") from None
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if cert.public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
        raise OpsError(f"{rel(cert_path)} does not match its key {rel(key_path)}: "
                       "run `./invoke init --rotate` to reissue both")
    if ca_path:
        ca = x509.load_pem_x509_certificate(ca_path.read_bytes())
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, Exception) as exc:  # InvalidSignature has no common base
            raise OpsError(f"{rel(cert_path)} was not issued by {rel(ca_path)} ({type(exc).__name__}): "
                           "run `./invoke init --rotate`") from None
