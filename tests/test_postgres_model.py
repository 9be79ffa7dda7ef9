"""PostgreSQL per tenant (issue 21), the model: the rows that choose and bound a tenant's database, the names of the
server, its volume and each tenant's database and role, and what the tenant's declarations say about them."""
import re

import pytest

from deployment import envs, naming
from deployment import tenant as tenant_model

# PostgreSQL's unquoted identifier: a letter or underscore, then letters, digits, underscores or dollars, at most
# 63 bytes (NAMEDATALEN - 1); we also want lowercase only, since unquoted names fold to lowercase.
IDENTIFIER = re.compile(r"[a-z_][a-z0-9_$]{0,62}")


def _values(**extra) -> dict[str, str]:
    return {**envs.tenant_values("b", 8002, secret=lambda k: "x" * 40), **extra}


def test_sqlite_is_the_default_and_postgres_is_chosen_per_tenant():
    assert tenant_model.spec("b", _values()).database == tenant_model.SQLITE
    older = {k: v for k, v in _values().items() if not k.startswith("DATABASE_") and k != "DATABASE"}
    assert tenant_model.spec("b", older).database == tenant_model.SQLITE  # an env file from before the rows
    spec = tenant_model.spec("b", _values(DATABASE="postgres"))
    assert spec.on_postgres and spec.database == "postgres"


def test_bad_database_settings_are_one_line_each_with_their_fix():
    found = envs.problems(envs.TENANT_SETTINGS, _values(DATABASE="mysql", DATABASE_CONNECTION_LIMIT="0",
                                                        DATABASE_STATEMENT_TIMEOUT="soon"))
    assert found == ["DATABASE='mysql' is not valid: set it to sqlite or postgres",
                     "DATABASE_CONNECTION_LIMIT=0 is out of range 1..1000: set it to a whole number of connections, "
                     "e.g. 20",
                     "DATABASE_STATEMENT_TIMEOUT='soon' is not a whole number: set it to a whole number of seconds, "
                     "e.g. 30"]
    with pytest.raises(ValueError, match="DATABASE='mysql' is not valid"):
        tenant_model.spec("b", _values(DATABASE="mysql"))


def test_the_password_is_a_generated_secret_delivered_as_a_file_and_never_inside_a_url():
    row = envs.TENANT["DATABASE_PASSWORD"]
    assert row.secret and row.as_file and row.required  # init generates it for every tenant, old files too
    assert envs.tenant_values("b", 8002)["DATABASE_PASSWORD"] == envs.PLACEHOLDER
    with pytest.raises(ValueError, match="DATABASE=postgres with a DATABASE_URL"):
        tenant_model.spec("b", _values(DATABASE="postgres", DATABASE_URL="postgres://u:secret@h/d"))
    assert tenant_model.spec("b", _values(DATABASE_URL="postgres://u:p@elsewhere/d")).database == "sqlite"


def test_a_connection_limit_below_what_the_processes_open_is_refused_only_on_postgres():
    spec = tenant_model.spec("b", _values(DATABASE="postgres"))
    # 2 web processes x 4 threads, the default pool's 2 processes and its main process, beat, exporter, one ops command
    assert spec.database_connections_needed() == 8 + 3 + 3 <= int(envs.TENANT["DATABASE_CONNECTION_LIMIT"].default)
    with pytest.raises(ValueError, match=r"DATABASE_CONNECTION_LIMIT=10 is below the 14 PostgreSQL connections"):
        tenant_model.spec("b", _values(DATABASE="postgres", DATABASE_CONNECTION_LIMIT="10"))
    assert tenant_model.spec("b", _values(DATABASE_CONNECTION_LIMIT="10")).database == "sqlite"  # unused there


@pytest.mark.parametrize("tenant", ["a", "b", "shop", "z12345678901234"])
def test_database_and_role_names_are_plain_identifiers_of_the_tenant_alone(tenant):
    assert naming.is_valid_tenant_name(tenant)
    for name in (naming.database_name(tenant), naming.database_role(tenant)):
        assert IDENTIFIER.fullmatch(name), name
    shared = {naming.POSTGRES_OPS_ROLE, naming.POSTGRES_MONITOR_ROLE, naming.POSTGRES_MAINTENANCE_DB, "postgres"}
    assert naming.database_role(tenant) not in shared and naming.database_name(tenant) not in shared
    assert all(IDENTIFIER.fullmatch(n) for n in shared)
    assert naming.database_name("a") != naming.database_name("ab")  # one tenant's name is never another's


def test_the_server_has_its_own_name_port_and_volume():
    assert naming.POSTGRES_SERVICE not in (naming.REDIS_SERVICE, *naming.MONITORING_SERVICES, naming.TOOLS_SERVICE)
    assert naming.POSTGRES_DATA_VOLUME != naming.REDIS_DATA_VOLUME
    assert naming.POSTGRES_PORT == 5432
    assert naming.tenant_of(naming.POSTGRES_SERVICE) is None  # a shared service, no tenant's
