"""The one renderer of PostgreSQL's access rules: pg_hba.conf, the server's limits, the SQL keeping roles in step.

Like acl.py for Redis: nothing else writes a pg_hba line, a role or a database grant. Standard library only, so the
host and the containers can both import it. What it renders, from the tenants that declare DATABASE=postgres:
  pg_hba.conf      `hostssl <db> <role> all scram-sha-256` per tenant (its role and its metrics exporter's), ops'
                   and the exporter's, and the bootstrap superuser over the container's own socket only; nothing
                   else, so plain TCP (and any other database, role or method) matches no line and is refused
  tenantstack.conf the facts of postgresql.conf the model owns (port, max_connections, reserved slots)
  SQL              per tenant: its role (LOGIN, no superuser/createdb/createrole/replication/bypassrls, CONNECTION
                   LIMIT, statement_timeout, the password as a SCRAM verifier computed here, so no plain password
                   ever crosses psql or the server's logs), its database OWNED by it, CONNECT revoked from PUBLIC;
                   its metrics exporter's read-only role tenant_<t>_metrics (CONNECT on that database only; the SELECT
                   on the result table comes from the glue's migration, run by the table's owner);
                   the ops and monitor roles; roles of tenants no longer on PostgreSQL lose LOGIN (their data stays)
  the budget       one line when the tenants' limits plus their metrics exporters', ops' and the exporter's exceed
                   what the server allows
The SQL is idempotent (psql's \\gexec creates what is missing; ALTER states the whole truth), so every `up` runs it
all as the bootstrap superuser over the container's socket (`psql -v ON_ERROR_STOP=1`, the script on stdin).
"""
import base64
import hashlib
import hmac
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from . import envs, naming
from . import tenant as tenant_model

# The server's connection slots. Each connection is a process (pids_limit follows); 200 leaves room for ten tenants
# at the default limit of 20 without a pooler. Non-superusers may use max_connections minus the reserved slots,
# which keep the bootstrap superuser (provisioning, an operator's docker exec) able to connect when tenants are full.
MAX_CONNECTIONS = 200
SUPERUSER_RESERVED_CONNECTIONS = 3
OPS_CONNECTIONS = 4  # a dump, a restore, a check and an operator's psql at once
MONITOR_CONNECTIONS = 3  # prometheus-postgres-exporter holds one per scrape; slack for a slow one
# A tenant's metrics exporter (app/tenantstack/metrics.py): one connection per scrape, closed after it; slack for a
# scrape overlapping the previous one's. Its role's statement_timeout bounds a slow scrape.
METRICS_CONNECTIONS = 2
METRICS_STATEMENT_TIMEOUT = 5  # seconds
STATEMENT_TIMEOUT_UNIT = "s"
BOOTSTRAP_SUPERUSER = "postgres"  # initdb's superuser: peer over the container's own socket, never over TCP
SCRAM_ITERATIONS = 4096  # PostgreSQL's scram_iterations default
# PostgreSQL's unquoted identifiers that need no quoting (lowercase: unquoted names fold to lowercase), at most 63
# bytes. Every name here is checked against it before it reaches SQL or pg_hba.conf.
IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_VERIFIER = re.compile(r"SCRAM-SHA-256\$([0-9]+):([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+):([A-Za-z0-9+/=]+)")


@dataclass(frozen=True)
class TenantDatabase:
    """One PostgreSQL tenant as the server sees it: its database and role, and the role's limits."""
    tenant: str
    connection_limit: int
    statement_timeout: int  # seconds
    password: str

    @property
    def database(self) -> str:
        return naming.database_name(self.tenant)

    @property
    def role(self) -> str:
        return naming.database_role(self.tenant)

    @property
    def metrics_role(self) -> str:
        return naming.database_metrics_role(self.tenant)


def ident(name: str) -> str:
    if not IDENTIFIER.fullmatch(name):
        raise ValueError(f"{name!r} is not a plain PostgreSQL identifier")
    return name


def _integer(values: Mapping[str, str], name: str) -> int:
    row = envs.TENANT[name]
    value, problem = envs.integer(row, envs.value_of(row, values))
    if problem:  # the env file's validation refuses it first; never render SQL from it
        raise ValueError(f"{problem}: {row.fix}")
    return value


def tenant_databases(tenant_settings: Mapping[str, Mapping[str, str]]) -> list[TenantDatabase]:
    """The tenants on PostgreSQL (DATABASE=postgres), sorted, from tenant -> its env file's values."""
    out = []
    for tenant, values in sorted(tenant_settings.items()):
        if tenant_model.spec(tenant, dict(values)).on_postgres:
            out.append(TenantDatabase(tenant, _integer(values, "DATABASE_CONNECTION_LIMIT"),
                                      _integer(values, "DATABASE_STATEMENT_TIMEOUT"), values["DATABASE_PASSWORD"]))
    return out


# ---- passwords: SCRAM-SHA-256 verifiers (RFC 5802 / 7677, as PostgreSQL stores them in pg_authid) ----------------
def scram_verifier(password: str, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS) -> str:
    """`SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, what `ALTER ROLE ... PASSWORD` stores as is.

    PostgreSQL normalises a password with SASLprep first; for printable ASCII that is the identity, and every password
    the deployment generates is (token_urlsafe). Anything else is refused rather than hashed differently."""
    if not password or not all(c.isascii() and c.isprintable() and not c.isspace() for c in password):
        raise ValueError("a PostgreSQL password here must be printable ASCII without spaces (./invoke init makes one)")
    salt = os.urandom(16) if salt is None else salt
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    b64 = lambda raw: base64.b64encode(raw).decode()  # noqa: E731 - three uses, one line each
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def scram_matches(password: str, verifier: str) -> bool:
    """Whether `verifier` (e.g. read from pg_authid) is this password's: `up` then leaves the role's password alone."""
    found = _VERIFIER.fullmatch(verifier or "")
    if not found:
        return False
    iterations, salt = int(found[1]), base64.b64decode(found[2])
    return hmac.compare_digest(scram_verifier(password, salt, iterations), verifier)


def _literal(verifier: str) -> str:
    """A verifier as an SQL literal: its alphabet holds no quote or backslash, which the match proves."""
    if not _VERIFIER.fullmatch(verifier):
        raise ValueError("not a SCRAM-SHA-256 verifier")
    return f"'{verifier}'"


# ---- the budget of connection slots -------------------------------------------------------------------------------
def usable_connections() -> int:
    return MAX_CONNECTIONS - SUPERUSER_RESERVED_CONNECTIONS


def connection_budget_problem(databases: list[TenantDatabase]) -> str | None:
    """One line naming the numbers when the tenants' limits plus their metrics exporters', ops' and the exporter's
    exceed the server's slots."""
    tenants_sum = sum(d.connection_limit for d in databases)
    metrics = METRICS_CONNECTIONS * len(databases)
    total = tenants_sum + metrics + OPS_CONNECTIONS + MONITOR_CONNECTIONS
    if total <= usable_connections():
        return None
    each = " + ".join(f"{d.tenant} {d.connection_limit}" for d in databases)
    return (f"PostgreSQL: the tenants' DATABASE_CONNECTION_LIMIT ({each} = {tenants_sum}) plus their metrics exporters "
            f"{metrics} ({METRICS_CONNECTIONS} each), ops {OPS_CONNECTIONS} and the exporter {MONITOR_CONNECTIONS} "
            f"make {total}, above the {usable_connections()} connections "
            f"max_connections {MAX_CONNECTIONS} leaves after {SUPERUSER_RESERVED_CONNECTIONS} reserved for the "
            f"superuser: lower DATABASE_CONNECTION_LIMIT in the tenants' env files")


# ---- pg_hba.conf and the server's facts ---------------------------------------------------------------------------
def hba_lines(databases: list[TenantDatabase]) -> list[tuple[str, ...]]:
    """(type, database, user, address, method) of every line; first match wins, no match is refused."""
    maintenance = ident(naming.POSTGRES_MAINTENANCE_DB)
    lines = [("local", "all", ident(BOOTSTRAP_SUPERUSER), "", "peer"),
             ("hostssl", maintenance, ident(naming.POSTGRES_MONITOR_ROLE), "all", "scram-sha-256"),
             # ops reaches each tenant's database as a member of its role (dump, restore) and the maintenance one
             ("hostssl", ",".join([maintenance, *(ident(d.database) for d in databases)]),
              ident(naming.POSTGRES_OPS_ROLE), "all", "scram-sha-256")]
    for d in databases:
        lines.append(("hostssl", ident(d.database), ident(d.role), "all", "scram-sha-256"))
        # its metrics exporter (on ops' network, not the tenant's): its own database, nothing else
        lines.append(("hostssl", ident(d.database), ident(d.metrics_role), "all", "scram-sha-256"))
    return lines


def pg_hba(databases: list[TenantDatabase]) -> str:
    head = ["# GENERATED by ./invoke from the tenants' env files (deployment/postgres.py): do not edit, it is",
            "# rewritten on every run. Only these lines exist: TLS with SCRAM per role and database, the bootstrap",
            "# superuser on the container's own socket. Anything else (plain TCP, another database, trust, md5)",
            "# matches no line, so it is refused.",
            f"# {'TYPE':<9} {'DATABASE':<24} {'USER':<22} {'ADDRESS':<8} METHOD"]
    body = [f"{t:<11} {db:<24} {user:<22} {addr:<8} {method}".rstrip() for t, db, user, addr, method in
            hba_lines(databases)]
    return "\n".join(head + body) + "\n"


def server_conf() -> str:
    """The settings of postgresql.conf the model owns (postgres/postgresql.conf includes this file)."""
    return "\n".join([
        "# GENERATED by ./invoke (deployment/postgres.py): do not edit, it is rewritten on every run.",
        f"port = {naming.POSTGRES_PORT}",
        f"max_connections = {MAX_CONNECTIONS}",
        f"superuser_reserved_connections = {SUPERUSER_RESERVED_CONNECTIONS}",
    ]) + "\n"


def pids_limit() -> int:
    """The server container's pids limit: a process per connection, plus the background workers and the checks."""
    return MAX_CONNECTIONS + 64


def operator_passwords(redis_env: Mapping[str, str]) -> dict[str, str]:
    """role -> password of ops' role (POSTGRES_OPS_PASSWORD in envs/redis.env) and the exporter's (derived from
    REDIS_MONITORING_SECRET like every monitoring user's, so it needs no row of its own)."""
    from . import acl

    return {naming.POSTGRES_OPS_ROLE: redis_env["POSTGRES_OPS_PASSWORD"],
            naming.POSTGRES_MONITOR_ROLE: acl.monitoring_password(redis_env, naming.POSTGRES_MONITOR_ROLE)}


def metrics_passwords(redis_env: Mapping[str, str], databases: list[TenantDatabase]) -> dict[str, str]:
    """role -> password of each PostgreSQL tenant's metrics role: derived like every monitoring user's (no secret row;
    ops writes the same value into the exporter's password folder)."""
    from . import acl

    return {d.metrics_role: acl.monitoring_password(redis_env, d.metrics_role) for d in databases}


# ---- the SQL that creates and keeps in step every role and database -----------------------------------------------
def _create_role(role: str) -> str:
    return (f"SELECT 'CREATE ROLE {role}' WHERE NOT EXISTS "
            f"(SELECT FROM pg_catalog.pg_roles WHERE rolname = '{role}')\\gexec")


def _login_role(role: str, limit: int, verifier: str, inherit: bool = False) -> str:
    # Every attribute stated, so the role is exactly this whatever it was before (an operator's ALTER is undone).
    return (f"ALTER ROLE {role} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE {'INHERIT' if inherit else 'NOINHERIT'} "
            f"NOREPLICATION NOBYPASSRLS CONNECTION LIMIT {limit} PASSWORD {_literal(verifier)};")


def tenant_sql(d: TenantDatabase, verifier: str) -> list[str]:
    """One tenant's role and database, whole. `verifier`: scram_verifier(d.password), or the stored one when it
    still matches (scram_matches), so an unchanged password leaves pg_authid unchanged."""
    role, db = ident(d.role), ident(d.database)
    return [
        f"-- tenant {d.tenant}",
        _create_role(role),
        _login_role(role, d.connection_limit, verifier),
        f"ALTER ROLE {role} SET statement_timeout = '{int(d.statement_timeout)}{STATEMENT_TIMEOUT_UNIT}';",
        f"SELECT 'CREATE DATABASE {db} OWNER {role} ENCODING ''UTF8'' TEMPLATE template0' WHERE NOT EXISTS "
        f"(SELECT FROM pg_catalog.pg_database WHERE datname = '{db}')\\gexec",
        f"ALTER DATABASE {db} OWNER TO {role};",
        # PUBLIC has CONNECT and TEMPORARY on every new database: another tenant's role (or the exporter) would get
        # in. The owner keeps its rights; ops gets in as a member of the role (below).
        f"REVOKE ALL ON DATABASE {db} FROM PUBLIC;",
        f"GRANT {role} TO {ident(naming.POSTGRES_OPS_ROLE)};",
    ]


def metrics_sql(d: TenantDatabase, verifier: str) -> list[str]:
    """The tenant's metrics role: logs in to its tenant's database, reads nothing but what is granted to it (the
    glue's migration grants SELECT on the result table), never writes (read-only transactions), bounded by a short
    statement_timeout and CONNECTION LIMIT METRICS_CONNECTIONS. NOINHERIT and a member of nothing."""
    role, db = ident(d.metrics_role), ident(d.database)
    return [
        f"-- tenant {d.tenant}'s metrics exporter",
        _create_role(role),
        _login_role(role, METRICS_CONNECTIONS, verifier),
        f"ALTER ROLE {role} SET statement_timeout = '{METRICS_STATEMENT_TIMEOUT}{STATEMENT_TIMEOUT_UNIT}';",
        f"ALTER ROLE {role} SET default_transaction_read_only = on;",
        f"GRANT CONNECT ON DATABASE {db} TO {role};",
    ]


def operator_sql(ops_verifier: str, monitor_verifier: str) -> list[str]:
    """The ops role (a member of each tenant role: dumps and restores as the owner, no superuser) and the exporter's
    (pg_monitor: statistics and sizes, no table's rows)."""
    ops, monitor = ident(naming.POSTGRES_OPS_ROLE), ident(naming.POSTGRES_MONITOR_ROLE)
    return [
        "-- ops and the exporter",
        _create_role(ops),
        _login_role(ops, OPS_CONNECTIONS, ops_verifier, inherit=True),
        _create_role(monitor),
        _login_role(monitor, MONITOR_CONNECTIONS, monitor_verifier, inherit=True),
        f"GRANT pg_monitor TO {monitor};",
    ]


def retire_sql(databases: list[TenantDatabase]) -> list[str]:
    """Roles of tenants no longer on PostgreSQL (removed, or back on SQLite) lose LOGIN; their databases stay."""
    keep = ", ".join(f"'{ident(r)}'" for d in databases for r in (d.role, d.metrics_role)) or "''"
    pattern = naming.database_role("").replace("_", "\\_") + "%"  # tenant\_%: LIKE's `_` is any character
    return ["-- tenants no longer on PostgreSQL: no login, data kept",
            f"SELECT format('ALTER ROLE %I NOLOGIN', rolname) FROM pg_catalog.pg_roles WHERE rolname LIKE "
            f"'{pattern}' AND rolname NOT IN ({keep}) AND rolcanlogin\\gexec"]


def drop_tenant_sql(tenant: str) -> str:
    """Everything of a removed tenant on the server (`./invoke tenant-remove`): its database (its sessions ended
    first), its role and its metrics exporter's role. Idempotent: a removal finished by `recover` runs it again."""
    db = ident(naming.database_name(tenant))
    roles = [ident(naming.database_role(tenant)), ident(naming.database_metrics_role(tenant))]
    lines = [f"DROP DATABASE IF EXISTS {db} WITH (FORCE);", *(f"DROP ROLE IF EXISTS {r};" for r in roles)]
    return "\n".join(lines) + "\n"


def provisioning_sql(databases: list[TenantDatabase], verifiers: Mapping[str, str]) -> str:
    """The whole script for `psql -v ON_ERROR_STOP=1` as the bootstrap superuser; verifiers: role -> verifier (every
    tenant role, each tenant's metrics role, ops and monitor). Refuses, in one line, tenants whose limits the server
    cannot hold."""
    problem = connection_budget_problem(databases)
    if problem:
        raise ValueError(problem)
    lines = ["-- GENERATED by ./invoke (deployment/postgres.py): roles and databases, idempotent."]
    lines += operator_sql(verifiers[naming.POSTGRES_OPS_ROLE], verifiers[naming.POSTGRES_MONITOR_ROLE])
    for d in databases:
        lines += tenant_sql(d, verifiers[d.role])
        lines += metrics_sql(d, verifiers[d.metrics_role])
    lines += retire_sql(databases)
    return "\n".join(lines) + "\n"
