"""`./invoke tenant-migrate-db <tenant> --to postgres`: move a SQLite tenant's data to its own PostgreSQL database.

The tenant keeps serving on SQLite while everything that can be done beforehand is done; its services stop only for
the copy. In order, each step journaled (ops/data/journal.py, kind `migrate`) before it starts:
  a  PostgreSQL runs, with the tenant counted as on it: its role, database and pg_hba line provisioned, the server on
     the tenant's network (compose.moving_to_postgres; joined live, ops/deploy/live_networks.py)
  b  the schema: the project's migrations in a one-off container of the tenant's image with DATABASE=postgres
  c  the tenant's web, worker pools and beat stopped (nothing writes the SQLite file any more)
  d  the copy: `manage.py copy_sqlite_to_postgres` (app/tenantstack/sqlite_to_postgres.py) in another one-off
     container: every table by COPY in one transaction, every count compared, every sequence reset, or nothing
  e  every table's rows counted again, independently: the SQLite file in a container without network, PostgreSQL
     as the superuser over its socket; any difference rolls the migration back
  f  (the sequences: reset inside d's transaction)
  g  DATABASE=postgres written into the tenant's env file (partial, read back, renamed: the one switch), its derived
     files re-rendered and its services started as `up` does
  h  the SQLite file stays on the tenant's volume until the operator removes it
Before g, a failure rolls back at once: the PostgreSQL database dropped, the role without login again (as for any
tenant not on PostgreSQL), the server off the tenant's network, the services started again on SQLite. A migration
killed outright is rolled back the same way by `./invoke recover`, or finished when the env file already says
DATABASE=postgres (the switch is written only after the counts matched).
"""
import json
import os
import subprocess
import time
import uuid
from pathlib import Path

from deployment import naming
from deployment import tenant as tenant_model
from deployment.instance import UIDS
from ops.config import tenants
from ops.config.envfile import read_env, rel
from ops.config.paths import INSTANCE
from ops.core.errors import OpsError
from ops.core.run import probe, run
from ops.data import journal as jn
from ops.data.journal import fault_point
from ops.deploy import compose, containers, health, postgres_admin
from ops.deploy.containers import volume_job
from ops.engine import baseimage
from ops.secrets import tenant_files

TARGETS = (tenant_model.POSTGRES,)
SQLITE_FILE = "/data/db.sqlite3"  # Config.sqlite_path in the tenant's containers (app/tenantstack/env.py)
COPY_COMMAND = "copy_sqlite_to_postgres"
STEP_SWITCH = "switching the env file to DATABASE=postgres"
PG = naming.POSTGRES_SERVICE

# Every table of the SQLite file and its rows, from a container of the base image without network (read-only open).
SQLITE_COUNTS = """python - <<'PY'
import json, sqlite3
db = sqlite3.connect('file:/data/db.sqlite3?mode=ro', uri=True)
tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
          if not r[0].startswith('sqlite_')]
print(json.dumps({t: db.execute('SELECT count(*) FROM "%s"' % t.replace('"', '""')).fetchone()[0] for t in tables}))
PY"""
# Every table of the tenant's PostgreSQL database and its rows, in one query (query_to_xml runs a count per table).
POSTGRES_COUNTS = ("SELECT table_name, (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I.%I', "
                   "table_schema, table_name), false, true, '')))[1]::text FROM information_schema.tables "
                   "WHERE table_schema = 'public' AND table_type = 'BASE TABLE';\n")


def check(name: str, to: str) -> tenants.Tenant:
    """The tenant to move, or one line saying why not (nothing started or changed yet)."""
    if to not in TARGETS:
        raise OpsError(f"--to {to!r}: a tenant can only move from SQLite to {' or '.join(TARGETS)}: "
                       f"use --to {TARGETS[0]}")
    t = tenants.load(name)  # an unknown tenant: one line naming the known ones
    values = read_env(t.env_file)
    if t.spec.on_postgres:
        raise OpsError(f"tenant {name} is on PostgreSQL already (DATABASE=postgres in {rel(t.env_file)}): "
                       "nothing to move")
    if values.get("DATABASE_URL"):
        raise OpsError(f"tenant {name} uses DATABASE_URL ({rel(t.env_file)}), not the SQLite file on its volume: "
                       "move that database yourself, or empty DATABASE_URL first")
    _, problems = tenant_model.read(name, {**values, "DATABASE": tenant_model.POSTGRES})
    if problems:
        raise OpsError(f"{rel(t.env_file)} with DATABASE=postgres: {'; '.join(problems)}")
    postgres_admin.check_budget(postgres_admin.databases(tenants.known_names(), moving=[name]))
    if not containers.is_running(t.service("web")):
        raise OpsError(f"tenant {name} is not running: start it with `./invoke up --tenant {name}` first (its "
                       "migrations run in its image, and its SQLite file is read on its volume)")
    return t


def migrate(name: str, to: str, timeout: float = 300, log=print) -> None:
    t = check(name, to)
    t0 = time.monotonic()
    services = t.services()
    with jn.operation("tenant-migrate-db") as journal, compose.moving_to_postgres(name):
        state = journal.record("migrate", tenant=name, step="preparing PostgreSQL", stopped=[])
        try:
            _prepare_postgres(journal, state, t, timeout, log)
            fault_point("migrate-prepared")
            journal.update(state, step="creating the schema")
            log(f"tenant-migrate-db: (b) the project's migrations on PostgreSQL (tenant {name} still serves on SQLite)")
            # The entrypoint's `manage` role applies the migrations first (under the volume's migrate lock);
            # `migrate --check` then fails if any is still unapplied.
            _one_off(t, "migrate", "--check", "--noinput")
            fault_point("migrate-schema")
            journal.update(state, step="stopping the services", stopped=services)
            log(f"tenant-migrate-db: (c) stopping {', '.join(services)} for the copy")
            stopped_at = time.monotonic()
            compose.run("stop", *services, profiles=[t.profile])
            fault_point("migrate-stopped")
            journal.update(state, step="copying the tables")
            log("tenant-migrate-db: (d) copying every table (one transaction; counts compared, sequences reset)")
            _one_off(t, COPY_COMMAND)
            fault_point("migrate-copied")
            journal.update(state, step="counting the rows again")
            counted = compare_counts(name)
            log(f"tenant-migrate-db: (e) every table's rows counted again: {len(counted)} tables, "
                f"{sum(counted.values())} rows, the same in SQLite and PostgreSQL")
            journal.update(state, step=STEP_SWITCH)
            switch_env(t.env_file, name, tenant_model.POSTGRES)
            log(f"tenant-migrate-db: (g) {rel(t.env_file)}: DATABASE=postgres")
            fault_point("migrate-switched")
            journal.update(state, step="starting the services on PostgreSQL")
            start_on_postgres(name, timeout, log)
            journal.forget(state)
        except (OpsError, OSError, subprocess.CalledProcessError) as exc:
            if state not in journal.entries:
                raise
            _fail(journal, state, jn.failure_line(exc, t.env_file, "migration"), log)
    done = time.monotonic()
    log(f"tenant-migrate-db: tenant {name} runs on PostgreSQL (database {naming.database_name(name)}), moved in "
        f"{done - t0:.1f}s; its services were stopped for {done - stopped_at:.1f}s of it")
    log(f"tenant-migrate-db: (h) {sqlite_left(name)}")


def _prepare_postgres(journal: jn.Journal, state: dict, t: tenants.Tenant, timeout: float, log) -> None:
    """(a) The server running and healthy on the tenant's network, the tenant's role, database and pg_hba line there.

    A database of the tenant's name that exists already (left from an earlier time on PostgreSQL: a tenant moved back
    to SQLite keeps it) is refused, never overwritten; only a database this migration created is dropped on rollback.
    """
    log(f"tenant-migrate-db: (a) PostgreSQL: the role and database of tenant {t.name}")
    pg = postgres_admin.prepare(tenants.known_names(), [t], moving=[t.name])
    if probe(["docker", "image", "inspect", INSTANCE.image(PG)]).returncode != 0:
        log("tenant-migrate-db: building the PostgreSQL image (no tenant was on PostgreSQL yet)")
        baseimage.ensure()
        compose.run("build", PG, profiles=[naming.POSTGRES_PROFILE])
    compose.run("up", "--detach", "--remove-orphans=false", PG, profiles=[naming.POSTGRES_PROFILE])
    health.wait([PG], timeout)
    db = naming.database_name(t.name)
    found = postgres_admin.superuser_query(f"SELECT count(*) FROM pg_catalog.pg_database WHERE datname = '{db}';\n",
                                           "looking for the tenant's database")
    if found.strip() != "0":
        raise OpsError(f"PostgreSQL already has a database {db} (from an earlier time of tenant {t.name} on "
                       f"PostgreSQL?): it is not overwritten; keep what you need of it (pg_dump), drop it (`DROP "
                       f"DATABASE {db}` as the superuser), then retry")
    journal.update(state, database_created=True)  # from here on, a rollback drops it
    postgres_admin.provision(pg, log=lambda m: log(f"tenant-migrate-db: {m}"))


def _one_off(t: tenants.Tenant, *manage: str) -> None:
    """`manage.py <manage>` in a one-off container of the tenant's web (its image, volume, secret files, network)
    with DATABASE=postgres: the glue connects to its PostgreSQL database, the SQLite file is at /data.

    Its output goes to the terminal as it comes (the copy's progress). The container is named and kept until its exit
    code and last line are read (not --rm: Podman's Docker API reports 0 for a removed container whatever happened),
    so a failure is one line saying why; recover removes one a killed run left (_remove_one_offs)."""
    container = f"{INSTANCE.compose_project}-migrate-{t.name}-{uuid.uuid4().hex[:8]}"
    try:
        compose.run("run", "--name", container, "--no-deps", "-T", "-e", f"DATABASE={tenant_model.POSTGRES}",
                    t.service("web"), "manage", *manage, profiles=[t.profile], check=False)
        code = probe(["docker", "inspect", "--format", "{{.State.ExitCode}}", container]).stdout.strip()
        if code != "0":
            said = probe(["docker", "logs", "--tail", "3", container])
            last = ((said.stderr or said.stdout).strip().splitlines() or ["no output"])[-1][:300]
            raise OpsError(f"`manage.py {manage[0]}` in tenant {t.name}'s image failed (exit {code or '?'}): {last}")
    finally:
        probe(["docker", "rm", "-f", container])


def _table_counts(lines: str) -> dict[str, int]:
    return {table: int(count) for table, count in (ln.split("\t") for ln in lines.splitlines() if "\t" in ln)}


def compare_counts(name: str) -> dict[str, int]:
    """(e) table -> rows, the same in the SQLite file and the PostgreSQL database; one line naming the first
    difference otherwise."""
    data = naming.data_volume(name)
    out = volume_job(compose.image("app"), str(UIDS["app"]), {containers.volume(data): "/data"}, SQLITE_COUNTS)
    in_sqlite = json.loads(out.strip().splitlines()[-1])
    in_pg = _table_counts(postgres_admin.superuser_query(POSTGRES_COUNTS, "counting the rows in PostgreSQL",
                                                         naming.database_name(name)))
    for table in sorted(set(in_sqlite) | set(in_pg)):
        a, b = in_sqlite.get(table), in_pg.get(table)
        if a != b:
            raise OpsError(f"table {table}: {'no table' if a is None else f'{a} rows'} in SQLite, "
                           f"{'no table' if b is None else f'{b} rows'} in PostgreSQL after the copy")
    return in_sqlite


def switch_env(path: Path, name: str, database: str) -> None:
    """DATABASE=<database> in the tenant's env file, every other line as it was: written beside it as .partial,
    read back and checked (only DATABASE differs, the model accepts it), then renamed over it."""
    before = read_env(path)
    lines = path.read_text().splitlines(keepends=True)
    row = f"DATABASE={database}\n"
    replaced = [row if ln.split("=", 1)[0].strip().removeprefix("export ").strip() == "DATABASE" else ln
                for ln in lines]
    if replaced == lines and before.get("DATABASE") != database:  # no DATABASE row yet (an older env file)
        replaced += ([] if not lines or lines[-1].endswith("\n") else ["\n"]) + [row]
    partial = path.with_name(f".{path.name}.partial")
    partial.unlink(missing_ok=True)
    st = path.stat()
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, st.st_mode & 0o777)
    with os.fdopen(fd, "w") as fh:
        fh.write("".join(replaced))
        fh.flush()
        os.fsync(fh.fileno())
    os.chown(partial, st.st_uid, st.st_gid)
    after = read_env(partial)
    _, problems = tenant_model.read(name, after)
    if {**after, "DATABASE": before.get("DATABASE", "")} != before or after.get("DATABASE") != database or problems:
        partial.unlink(missing_ok=True)
        raise OpsError(f"{rel(path)}: the switch to DATABASE={database} did not read back as written "
                       f"({'; '.join(problems) or 'other rows changed'}); the file is unchanged")
    partial.replace(path)
    dirfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dirfd)
    finally:
        os.close(dirfd)


def start_on_postgres(name: str, timeout: float, log) -> None:
    """(g) As `up --tenant <name>` does for a PostgreSQL tenant: derived files, the server provisioned, the services
    started (Compose recreates them: they now depend on PostgreSQL and get DATABASE=postgres), healthy."""
    for line in tenant_files.write(name):
        log(f"tenant-migrate-db: {line}")
    t = tenants.load(name)
    pg = postgres_admin.prepare(tenants.known_names(), [t])
    compose.run("up", "--detach", "--remove-orphans=false", PG, profiles=[naming.POSTGRES_PROFILE])
    health.wait([PG], timeout)
    postgres_admin.provision(pg, log=lambda m: log(f"tenant-migrate-db: {m}"))
    compose.run("up", "--detach", "--remove-orphans=false", *t.services(), profiles=[t.profile])
    health.wait(t.services(), timeout)


def sqlite_left(name: str) -> str:
    volume = containers.volume(naming.data_volume(name))
    where = probe(["docker", "volume", "inspect", "--format", "{{.Mountpoint}}", volume]).stdout.strip()
    host = f" ({where}/db.sqlite3 on this host)" if where else ""
    return (f"the SQLite file stays on volume {volume} as {SQLITE_FILE}{host}; it is no longer used: remove it "
            f"when you no longer need it (e.g. after a backup)")


def _remove_one_offs(name: str) -> list[str]:
    """One-off containers of the tenant's web a killed migration left (its schema or copy step): removed first, so
    nothing writes while the migration is undone."""
    out = probe(["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={INSTANCE.compose_project}",
                 "--filter", "label=com.docker.compose.oneoff=True",
                 "--filter", f"label=com.docker.compose.service={naming.service_name(name, 'web')}"])
    ids = out.stdout.split()
    if ids:
        run(["docker", "rm", "-f", *ids], what="removing the migration's one-off containers")
        return [f"removed {len(ids)} one-off container(s) the interrupted migration left"]
    return []


def roll_back(state: dict, log=print) -> list[str]:
    """Back to SQLite: the PostgreSQL database dropped, the role without login and pg_hba without its line again (the
    tenant is not on PostgreSQL), the server off its network, the stopped services started. Each step may repeat."""
    name = state["tenant"]
    lines = _remove_one_offs(name)
    exists = probe(["docker", "inspect", containers.name(PG)]).returncode == 0
    if exists:
        compose.run("up", "--detach", "--remove-orphans=false", PG, profiles=[naming.POSTGRES_PROFILE])
        health.wait([PG], 300)
        db = naming.database_name(name)
        if state.get("database_created"):
            postgres_admin.superuser_query(f"DROP DATABASE IF EXISTS {db} WITH (FORCE);\n",
                                           f"dropping PostgreSQL database {db}")
            lines.append(f"dropped PostgreSQL database {db}")
        postgres_admin.provision(postgres_admin.prepare(tenants.known_names()), log=log)
        lines.append(f"PostgreSQL is as before: role {naming.database_role(name)} has no login, pg_hba.conf has no "
                     f"line for it, the server left network {naming.tenant_network(name)}")
    stopped = state.get("stopped") or []
    if stopped:
        compose.run("up", "--detach", "--remove-orphans=false", *stopped, profiles=[naming.compose_profile(name)])
        health.wait(stopped, 300)
    lines.append(f"tenant {name} is on SQLite as before (its file was never changed); "
                 f"{len(stopped)} service(s) started again")
    return lines


def _fail(journal: jn.Journal, state: dict, reason: str, log) -> None:
    """A step failed: before the switch roll back at once; after it the data is moved and checked, so keep it."""
    name = state["tenant"]
    if tenants.load(name).spec.on_postgres:
        journal.forget(state)
        raise OpsError(f"tenant {name}'s data is on PostgreSQL and checked, but starting its services failed "
                       f"({reason}): run `./invoke up --tenant {name}`") from None
    log(f"tenant-migrate-db: failed while {state['step']} ({reason}); rolling back")
    try:
        done = roll_back(state, log)
    except (OpsError, OSError, subprocess.CalledProcessError) as again:
        raise OpsError(f"migration of tenant {name} failed while {state['step']}: {reason}; rolling back failed too "
                       f"({jn.one_line(again)}): run `./invoke recover`") from None
    journal.forget(state)
    raise OpsError(f"migration of tenant {name} failed while {state['step']}: {reason}; rolled back: "
                   f"{done[-1]}") from None


def recover(journal: jn.Journal, state: dict, log=print) -> list[str]:
    """`./invoke recover` of a killed migration: finished when the env file says DATABASE=postgres (written only after
    the counts matched), else rolled back. Returns what was done, one line each."""
    name = state["tenant"]
    lines = [f"the migration of tenant {name} to PostgreSQL had reached: {state['step']}"]
    if tenants.load(name).spec.on_postgres:
        lines += _remove_one_offs(name)
        start_on_postgres(name, 300, log)
        lines.append(f"finished: tenant {name} runs on PostgreSQL; {sqlite_left(name)}")
    else:
        lines += roll_back(state, log)
    journal.forget(state)
    return lines
