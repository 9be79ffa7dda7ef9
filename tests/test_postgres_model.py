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
    # 2 web processes x 4 threads, the default pool's 2 processes and its main process, beat, one ops command (the
    # metrics exporter has a role of its own: deployment/postgres.py METRICS_CONNECTIONS, in the server's budget)
    assert spec.database_connections_needed() == 8 + 3 + 2 <= int(envs.TENANT["DATABASE_CONNECTION_LIMIT"].default)
    with pytest.raises(ValueError, match=r"DATABASE_CONNECTION_LIMIT=10 is below the 13 PostgreSQL connections"):
        tenant_model.spec("b", _values(DATABASE="postgres", DATABASE_CONNECTION_LIMIT="10"))
    assert tenant_model.spec("b", _values(DATABASE_CONNECTION_LIMIT="10")).database == "sqlite"  # unused there


@pytest.mark.parametrize("tenant", ["a", "b", "shop", "z12345678901234"])
def test_database_and_role_names_are_plain_identifiers_of_the_tenant_alone(tenant):
    assert naming.is_valid_tenant_name(tenant)
    for name in (naming.database_name(tenant), naming.database_role(tenant), naming.database_metrics_role(tenant)):
        assert IDENTIFIER.fullmatch(name), name
    shared = {naming.POSTGRES_OPS_ROLE, naming.POSTGRES_MONITOR_ROLE, naming.POSTGRES_MAINTENANCE_DB, "postgres"}
    assert naming.database_role(tenant) not in shared and naming.database_name(tenant) not in shared
    assert naming.database_metrics_role(tenant) not in shared
    # no tenant's role is spelled like another tenant's metrics role (tenant names have no underscore)
    assert not naming.is_valid_tenant_name(naming.database_metrics_role(tenant)[len("tenant_"):])
    assert all(IDENTIFIER.fullmatch(n) for n in shared)
    assert naming.database_name("a") != naming.database_name("ab")  # one tenant's name is never another's


def test_the_server_has_its_own_name_port_and_volume():
    assert naming.POSTGRES_SERVICE not in (naming.REDIS_SERVICE, *naming.MONITORING_SERVICES, naming.TOOLS_SERVICE)
    assert naming.POSTGRES_DATA_VOLUME != naming.REDIS_DATA_VOLUME
    assert naming.POSTGRES_PORT == 5432
    assert naming.tenant_of(naming.POSTGRES_SERVICE) is None  # a shared service, no tenant's


# ---- the renderer: deployment/postgres.py ---------------------------------------------------------------------------
def _tenants(**per_tenant) -> dict[str, dict[str, str]]:
    """tenant -> env values; a keyword's dict overrides that tenant's rows (tenant a stays on SQLite)."""
    out = {"a": envs.tenant_values("a", 8001, secret=lambda k: f"pw-a-{k}")}
    for name, extra in per_tenant.items():
        out[name] = {**envs.tenant_values(name, 8002, secret=lambda k, n=name: f"pw-{n}-{k}"), "DATABASE": "postgres",
                     **extra}
    return out


def test_only_postgres_tenants_get_a_database_with_their_own_limits():
    from deployment import postgres

    found = postgres.tenant_databases(_tenants(b={}, c={"DATABASE_CONNECTION_LIMIT": "40",
                                                        "DATABASE_STATEMENT_TIMEOUT": "5"}))
    assert [(d.tenant, d.database, d.role, d.connection_limit, d.statement_timeout) for d in found] == [
        ("b", "tenant_b", "tenant_b", 20, 30), ("c", "tenant_c", "tenant_c", 40, 5)]
    assert found[0].password == "pw-b-DATABASE_PASSWORD"


def test_pg_hba_has_tls_scram_per_role_and_database_and_nothing_else():
    from deployment import postgres

    text = postgres.pg_hba(postgres.tenant_databases(_tenants(b={}, c={})))
    rules = [line.split() for line in text.splitlines() if line and not line.startswith("#")]
    assert rules == [["local", "all", "postgres", "peer"],
                     ["hostssl", "postgres", "tenantstack_monitor", "all", "scram-sha-256"],
                     ["hostssl", "postgres,tenant_b,tenant_c", "tenantstack_ops", "all", "scram-sha-256"],
                     ["hostssl", "tenant_b", "tenant_b", "all", "scram-sha-256"],
                     ["hostssl", "tenant_b", "tenant_b_metrics", "all", "scram-sha-256"],
                     ["hostssl", "tenant_c", "tenant_c", "all", "scram-sha-256"],
                     ["hostssl", "tenant_c", "tenant_c_metrics", "all", "scram-sha-256"]]
    assert "tenant_a" not in text  # on SQLite: no line, so its role could not log in even if it existed


def test_scram_verifier_is_postgres_format_salted_and_checkable():
    from deployment import postgres

    first, second = postgres.scram_verifier("s3cret-pw"), postgres.scram_verifier("s3cret-pw")
    assert first != second and first.startswith("SCRAM-SHA-256$4096:")  # a fresh salt each time
    assert postgres.scram_matches("s3cret-pw", first) and not postgres.scram_matches("other", first)
    assert not postgres.scram_matches("s3cret-pw", "md5abc") and not postgres.scram_matches("s3cret-pw", "")
    fixed = postgres.scram_verifier("pencil", salt=b"0123456789abcdef")
    assert fixed == postgres.scram_verifier("pencil", salt=b"0123456789abcdef")  # deterministic given the salt
    with pytest.raises(ValueError, match="printable ASCII"):
        postgres.scram_verifier("pass word")


def _verifiers(databases):
    from deployment import postgres

    roles = [naming.POSTGRES_OPS_ROLE, naming.POSTGRES_MONITOR_ROLE, *(r for d in databases
                                                                       for r in (d.role, d.metrics_role))]
    return {r: postgres.scram_verifier(f"pw-{r}", salt=b"s" * 16) for r in roles}


def test_provisioning_sql_states_each_role_whole_and_never_holds_a_password():
    from deployment import postgres

    tenants = _tenants(b={}, c={"DATABASE_CONNECTION_LIMIT": "40", "DATABASE_STATEMENT_TIMEOUT": "5"})
    databases = postgres.tenant_databases(tenants)
    sql = postgres.provisioning_sql(databases, _verifiers(databases))
    assert "pw-" not in sql  # only verifiers: no password crosses psql
    lines = sql.splitlines()
    b_role = next(line for line in lines if line.startswith("ALTER ROLE tenant_b WITH"))
    assert b_role.startswith("ALTER ROLE tenant_b WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT "
                             "NOREPLICATION NOBYPASSRLS CONNECTION LIMIT 20 PASSWORD 'SCRAM-SHA-256$4096:")
    assert "ALTER ROLE tenant_c SET statement_timeout = '5s';" in lines
    assert "ALTER ROLE tenant_b SET statement_timeout = '30s';" in lines
    assert "REVOKE ALL ON DATABASE tenant_b FROM PUBLIC;" in lines
    assert "ALTER DATABASE tenant_c OWNER TO tenant_c;" in lines
    assert any(line.startswith("SELECT 'CREATE DATABASE tenant_b OWNER tenant_b") and line.endswith("\\gexec")
               for line in lines)
    assert "GRANT tenant_b TO tenantstack_ops;" in lines and "GRANT pg_monitor TO tenantstack_monitor;" in lines
    assert "tenant_a" not in sql  # SQLite tenant a: nothing rendered
    retire = lines[-1]
    assert retire.endswith("AND rolname NOT IN ('tenant_b', 'tenant_b_metrics', 'tenant_c', 'tenant_c_metrics') "
                           "AND rolcanlogin\\gexec")
    assert "LIKE 'tenant\\_%'" in retire


def test_the_metrics_role_reads_only_its_tenants_database_read_only_with_a_short_timeout():
    from deployment import postgres

    databases = postgres.tenant_databases(_tenants(b={}, c={}))
    lines = postgres.provisioning_sql(databases, _verifiers(databases)).splitlines()
    role = next(line for line in lines if line.startswith("ALTER ROLE tenant_b_metrics WITH"))
    assert role.startswith("ALTER ROLE tenant_b_metrics WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT "
                           "NOREPLICATION NOBYPASSRLS CONNECTION LIMIT 2 PASSWORD 'SCRAM-SHA-256$4096:")
    assert "ALTER ROLE tenant_b_metrics SET statement_timeout = '5s';" in lines
    assert "ALTER ROLE tenant_b_metrics SET default_transaction_read_only = on;" in lines
    grants = [line for line in lines if "tenant_b_metrics" in line and line.startswith("GRANT")]
    assert grants == ["GRANT CONNECT ON DATABASE tenant_b TO tenant_b_metrics;"]  # SELECT: the glue's migration
    redis_env = envs.redis_values(secret=lambda k: f"pw-{k}")
    derived = postgres.metrics_passwords(redis_env, databases)
    assert set(derived) == {"tenant_b_metrics", "tenant_c_metrics"} and len(set(derived.values())) == 2


def test_the_connection_budget_is_one_line_naming_the_numbers():
    from deployment import postgres

    fits = postgres.tenant_databases(_tenants(b={"DATABASE_CONNECTION_LIMIT": "100"},
                                              c={"DATABASE_CONNECTION_LIMIT": "86"}))
    assert postgres.connection_budget_problem(fits) is None  # 186 + 2 x 2 + 4 + 3 = 197 = 200 - 3
    over = postgres.tenant_databases(_tenants(b={"DATABASE_CONNECTION_LIMIT": "100"},
                                              c={"DATABASE_CONNECTION_LIMIT": "87"}))
    problem = postgres.connection_budget_problem(over)
    assert problem == ("PostgreSQL: the tenants' DATABASE_CONNECTION_LIMIT (b 100 + c 87 = 187) plus their metrics "
                       "exporters 4 (2 each), ops 4 and the exporter 3 make 198, above the 197 connections "
                       "max_connections 200 leaves after 3 reserved for the superuser: lower "
                       "DATABASE_CONNECTION_LIMIT in the tenants' env files")
    with pytest.raises(ValueError, match="^PostgreSQL: the tenants'"):
        postgres.provisioning_sql(over, _verifiers(over))


def test_a_name_or_verifier_that_is_not_plain_never_reaches_sql():
    from deployment import postgres

    d = postgres.TenantDatabase("b", 20, 30, "pw")
    with pytest.raises(ValueError, match="not a SCRAM-SHA-256 verifier"):
        postgres.tenant_sql(d, "x'; DROP ROLE postgres; --")
    with pytest.raises(ValueError, match="not a plain PostgreSQL identifier"):
        postgres.tenant_sql(postgres.TenantDatabase("B-1", 20, 30, "pw"), postgres.scram_verifier("pw"))


def test_server_facts_and_operator_passwords_come_from_the_model():
    from deployment import postgres

    conf = postgres.server_conf()
    assert "port = 5432" in conf and f"max_connections = {postgres.MAX_CONNECTIONS}" in conf
    assert postgres.pids_limit() > postgres.MAX_CONNECTIONS  # a process per connection
    redis_env = envs.redis_values(secret=lambda k: f"pw-{k}")
    passwords = postgres.operator_passwords(redis_env)
    assert passwords[naming.POSTGRES_OPS_ROLE] == "pw-POSTGRES_OPS_PASSWORD"
    assert len(passwords[naming.POSTGRES_MONITOR_ROLE]) == 64  # HMAC-SHA256 hex of its name
    assert envs.REDIS["POSTGRES_OPS_PASSWORD"].secret
