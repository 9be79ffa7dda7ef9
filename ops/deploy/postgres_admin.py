"""The one writer of PostgreSQL's access rules: puts deployment/postgres.py's rendering where it must be.

Like ops/secrets/acl.py for Redis. On every `up`:
  prepare()    reads every known tenant's env file, refuses in one line when the PostgreSQL tenants' connection
               limits exceed the server's slots (before anything is built or started), and renders pg_hba.conf and
               tenantstack.conf into the instance's generated/postgres/ (mounted read-only into the server): each
               written as .partial, read back and checked (only TLS + SCRAM lines, the bootstrap superuser on the
               socket only), then renamed over the old one, so the server never reads a half-written rule file
  provision()  runs the idempotent SQL of roles and databases in the running server as the bootstrap superuser over
               the container's own socket (`docker exec -i ... psql`, the script on stdin: no password on any
               command line), then reloads the server, which re-reads pg_hba.conf without a restart
A role's password is re-sent only when the stored SCRAM verifier no longer matches the env file's password, so an
unchanged password leaves pg_authid (and the role's open sessions) alone.
"""
from dataclasses import dataclass
from pathlib import Path

from deployment import naming
from deployment import postgres as model
from ops.config import tenants
from ops.config.envfile import read_env, redis_settings, rel
from ops.config.paths import INSTANCE
from ops.core.errors import OpsError
from ops.core.run import run

HBA_FILE = "pg_hba.conf"
CONF_FILE = "tenantstack.conf"
# Fields of pg_hba.conf's two kinds of line here: local DATABASE USER METHOD; hostssl DATABASE USER ADDRESS METHOD.
LOCAL_FIELDS, HOST_FIELDS = 4, 5
# The bootstrap superuser over the container's socket (in /tmp, postgres/postgresql.conf): peer authentication,
# so only `docker exec` as the server's own UID gets in. -X: no ~/.psqlrc; -q: only errors and NOTICEs.
PSQL = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "/tmp", "-U", model.BOOTSTRAP_SUPERUSER,
        "-d", naming.POSTGRES_MAINTENANCE_DB]


@dataclass(frozen=True)
class Prepared:
    """What `up` needs after prepare(): the PostgreSQL tenants, whether pg_hba.conf changed, whether to start it."""
    databases: list[model.TenantDatabase]
    hba_changed: bool
    needed: bool  # a tenant being started is on PostgreSQL


def databases(names, moving=()) -> list[model.TenantDatabase]:
    """The tenants on PostgreSQL among `names`, from their env files (the ones that exist); `moving`: tenants counted
    as on PostgreSQL before their env file says so (tenant-migrate-db: its role, database and pg_hba line first)."""
    settings = {n: read_env(tenants.env_path(n)) for n in names if tenants.env_path(n).exists()}
    for n in moving:
        if n in settings:
            settings[n] = {**settings[n], "DATABASE": "postgres"}
    try:
        return model.tenant_databases(settings)
    except ValueError as exc:  # a setting the env file's own validation lets through should never get here
        raise OpsError(f"PostgreSQL: {exc}") from None


def check_budget(found: list[model.TenantDatabase]) -> None:
    problem = model.connection_budget_problem(found)
    if problem:
        raise OpsError(problem)


def verify_hba(text: str) -> str | None:
    """What is wrong with a rendered pg_hba.conf, or None: only hostssl with SCRAM, and `local` for the superuser."""
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        kind, method = fields[0], fields[-1]
        superuser_socket = kind == "local" and fields[2] == model.BOOTSTRAP_SUPERUSER and method == "peer"
        if superuser_socket and len(fields) == LOCAL_FIELDS:
            continue
        if kind != "hostssl" or method != "scram-sha-256" or len(fields) != HOST_FIELDS:
            return f"line {number} ({' '.join(fields)}) is not hostssl with scram-sha-256"
    return None


def _install(folder: Path, name: str, text: str, verify=None) -> bool:
    """Write folder/name as .partial, read it back and check it, then rename it over the old one; True if changed."""
    path = folder / name
    if path.exists() and path.read_text() == text:
        return False
    partial = folder / f".{name}.partial"
    partial.unlink(missing_ok=True)
    partial.write_text(text)
    partial.chmod(0o644)  # no secret in it; the server's UID reads it through the read-only mount
    written = partial.read_text()
    problem = (None if written == text else "it reads back differently") or (verify(written) if verify else None)
    if problem:
        partial.unlink(missing_ok=True)
        raise OpsError(f"PostgreSQL: the rendered {name} was not installed: {problem} (deployment/postgres.py); "
                       f"the previous {rel(path)} is kept")
    partial.replace(path)
    return True


def render(found: list[model.TenantDatabase], folder: Path | None = None) -> bool:
    """pg_hba.conf and tenantstack.conf into the instance's generated/postgres/; True when pg_hba.conf changed."""
    folder = INSTANCE.postgres_config if folder is None else folder
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    _install(folder, CONF_FILE, model.server_conf())
    return _install(folder, HBA_FILE, model.pg_hba(found), verify=verify_hba)


def prepare(names, selected=(), moving=()) -> Prepared:
    """Before anything starts: the budget (one line), then the rendered files. Every known tenant (`names`) counts:
    the server holds the roles of all of them, started or not; `selected` (tenants.Tenant) decides whether it starts;
    `moving`: see databases()."""
    found = databases(names, moving)
    check_budget(found)
    return Prepared(found, render(found), needed(selected))


def needed(selected) -> bool:
    """Whether any selected tenant (tenants.Tenant) is on PostgreSQL: then `up` starts and provisions the server."""
    return any(t.spec and t.spec.on_postgres for t in selected)


def superuser_sql(sql: str, what: str, *args: str, timeout: float = 120) -> str:
    """`sql` (on stdin) as the bootstrap superuser over the server container's own socket; psql's output."""
    argv = ["docker", "exec", "-i", INSTANCE.container(naming.POSTGRES_SERVICE), *PSQL, *args]
    out = run(argv, input=sql, what=what, timeout=timeout)
    # psql's errors end it with ON_ERROR_STOP (exit 3); a statement that failed otherwise still names ERROR.
    if "ERROR:" in (out.stderr or ""):
        raise OpsError(f"{what} failed: {next(ln for ln in out.stderr.splitlines() if 'ERROR:' in ln)[:300]}")
    return out.stdout


def superuser_query(sql: str, what: str, database: str = naming.POSTGRES_MAINTENANCE_DB) -> str:
    """`sql` as the bootstrap superuser over the server's socket, on `database`; unaligned output, tab-separated."""
    return superuser_sql(sql, what, "-At", "-F", "\t", "-d", database)  # psql takes the last -d


def stored_verifiers(roles: list[str]) -> dict[str, str]:
    """role -> the SCRAM verifier the server holds (pg_authid, superuser only), for the roles that exist."""
    listed = ", ".join(f"'{model.ident(r)}'" for r in roles)
    out = superuser_sql(f"SELECT rolname, rolpassword FROM pg_catalog.pg_authid WHERE rolname IN ({listed});\n",
                "reading PostgreSQL's role passwords", "-At", "-F", "\t")
    return dict(line.split("\t", 1) for line in out.splitlines() if "\t" in line)


def verifiers(passwords: dict[str, str], stored: dict[str, str]) -> dict[str, str]:
    """role -> the verifier to send: the stored one while it still matches the password, else a new one."""
    return {role: stored[role] if model.scram_matches(pw, stored.get(role, "")) else model.scram_verifier(pw)
            for role, pw in passwords.items()}


def passwords(found: list[model.TenantDatabase]) -> dict[str, str]:
    """role -> password of every role the SQL states: ops', the exporter's, each PostgreSQL tenant's and its metrics
    exporter's (derived, like every monitoring password)."""
    redis_env = redis_settings()
    return {**model.operator_passwords(redis_env), **model.metrics_passwords(redis_env, found),
            **{d.role: d.password for d in found}}


def provision(prepared: Prepared, log=print) -> None:
    """Roles and databases in step with the env files in the running server, then a reload (pg_hba.conf)."""
    wanted = passwords(prepared.databases)
    stored = stored_verifiers(list(wanted))
    sent = verifiers(wanted, stored)
    try:
        sql = model.provisioning_sql(prepared.databases, sent)
    except ValueError as exc:  # the budget: prepare() refused it already, unless an env file changed since
        raise OpsError(str(exc)) from None
    superuser_sql(sql, "provisioning PostgreSQL's roles and databases")
    superuser_sql("SELECT pg_catalog.pg_reload_conf();\n", "reloading PostgreSQL's configuration")
    renewed = sorted(r for r in wanted if sent[r] != stored.get(r))
    names = ", ".join(d.tenant for d in prepared.databases) or "none"
    log(f"PostgreSQL: roles and databases in step (tenants {names}); "
        f"{'new password for ' + ', '.join(renewed) if renewed else 'no password changed'}; "
        f"configuration reloaded{' (pg_hba.conf changed)' if prepared.hba_changed else ''}")
