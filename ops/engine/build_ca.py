"""Extra CA certificates for image builds that download over HTTPS (npm) behind a TLS-inspecting proxy.

A host behind such a proxy trusts the proxy's CA through Debian's /usr/local/share/ca-certificates; a
build container does not, so its downloads fail with "self-signed certificate in certificate chain".
Every compose call gets these certificates (public, never secret) in TENANTSTACK_BUILD_CA_CERTS; a
build arg passes them to the Dockerfile, which trusts them for its download step only (the image does
not keep them). On a host with no locally added CA it is empty and changes nothing.
"""
from pathlib import Path

LOCAL_CA_DIR = Path("/usr/local/share/ca-certificates")  # Debian's place for site-added CAs
ENV_NAME = "TENANTSTACK_BUILD_CA_CERTS"


def pem_bundle(ca_dir: Path = LOCAL_CA_DIR) -> str:
    """Every locally added CA certificate, concatenated (PEM), in a stable order."""
    certs = sorted(ca_dir.rglob("*.crt")) if ca_dir.is_dir() else []
    return "".join(p.read_text().strip() + "\n" for p in certs if p.is_file())


def compose_env() -> dict[str, str]:
    return {ENV_NAME: pem_bundle()}
