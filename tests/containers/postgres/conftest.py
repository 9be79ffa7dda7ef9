"""Tenants on PostgreSQL beside the SQLite ones: `pgb` and `pgc` are added with `--database postgres` once for
this folder's tests and removed after them, so the rest of the suite sees the instance it expects (a and b)."""
import pytest

from tests.support import tenant_lifecycle

PG_TENANTS = ("pgb", "pgc")


@pytest.fixture(scope="package")
def postgres_tenants_up(tenants_up):
    """Tenants a and b (SQLite) and pgb, pgc (PostgreSQL), all healthy."""
    try:
        for name in PG_TENANTS:
            tenant_lifecycle.add(name, "--database", "postgres")
        from tests.support.deployment import invoke

        invoke("up", *[f"--tenant={n}" for n in ("a", "b", *PG_TENANTS)])
        yield PG_TENANTS
    finally:
        for name in PG_TENANTS:
            tenant_lifecycle.remove(name)
