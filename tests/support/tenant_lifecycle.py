"""Adding a throwaway tenant to the test instance and taking every trace of it away again with the product's own
`./invoke tenant-remove` (an archive first, then its services, env file, certificates, volume, image, Redis keys and
ACL users, and on PostgreSQL its database and roles)."""
from tests.support import deployment as d


def add(name: str, *flags: str) -> str:
    return d.invoke("tenant-add", name, *flags).stdout


def remove(name: str) -> str:
    """Every trace of tenant `name` but its archive; returns what `./invoke tenant-remove` said."""
    return d.invoke("tenant-remove", name, "--yes").stdout
