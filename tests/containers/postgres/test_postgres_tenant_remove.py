"""`./invoke tenant-remove` of a tenant on PostgreSQL: its database and both its roles are dropped, nothing else's."""
import pytest

from deployment import naming
from ops.config.tenants import env_path
from ops.data import tenant_remove
from tests.support import deployment as d
from tests.support import postgres, tenant_lifecycle

pytestmark = pytest.mark.usefixtures("postgres_tenants_up")
NAME = "pgr"


def _objects(name: str) -> list[str]:
    roles = ", ".join(f"'{r}'" for r in (naming.database_role(name), naming.database_metrics_role(name)))
    return postgres.superuser(
        f"SELECT datname FROM pg_database WHERE datname = '{naming.database_name(name)}' UNION ALL "
        f"SELECT rolname FROM pg_roles WHERE rolname IN ({roles}) ORDER BY 1;").split()


def test_removing_a_postgres_tenant_drops_its_database_and_roles():
    tenant_lifecycle.add(NAME, "--database", "postgres")
    try:
        d.invoke("up", "--tenant", NAME)
        assert len(_objects(NAME)) == 3
        others = {n: _objects(n) for n in ("pgb", "pgc")}
        out = tenant_lifecycle.remove(NAME)
        assert f"database {naming.database_name(NAME)} and roles" in out
        assert _objects(NAME) == [] and tenant_remove.remains(NAME) == []
        assert {n: _objects(n) for n in ("pgb", "pgc")} == others
    finally:
        if env_path(NAME).exists():
            tenant_lifecycle.remove(NAME)
