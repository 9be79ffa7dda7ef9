"""Tenants on PostgreSQL beside a SQLite one: `pgb` and `pgc` are added with `--database postgres` once for this
folder's tests, beside tenant a, and removed after them, so the rest of the suite sees the instance it expects."""
import pytest

from tests.support import tenant_lifecycle

PG_TENANTS = ("pgb", "pgc")


@pytest.fixture(scope="package")
def postgres_tenants_up(redis_up):
    """Tenant a (SQLite) and pgb, pgc (PostgreSQL), all healthy. Not b: one SQLite tenant beside them is the case,
    and three services fewer make every restore and restart here cheaper."""
    try:
        for name in PG_TENANTS:
            tenant_lifecycle.add(name, "--database", "postgres")
        from tests.support.deployment import invoke

        invoke("up", *[f"--tenant={n}" for n in ("a", *PG_TENANTS)])
        yield PG_TENANTS
    finally:
        for name in PG_TENANTS:
            tenant_lifecycle.remove(name)
