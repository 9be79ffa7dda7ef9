"""PostgreSQL tenants' databases in backups and restores: dump, check, count and restore, from the server's image.

Every tool runs in a throwaway container of the instance's PostgreSQL image (INSTANCE.image("postgres")), never the
host's: read-only root, no capabilities, no-new-privileges, and a network only when it talks to the server.
  dump()        pg_dump --format=custom as ops' role (tenantstack_ops, a member of every tenant role) with
                --role=tenant_<t>, so the archive is the owner's view; over TLS (verify-full against the
                deployment's CA, host `postgres`) on ops' own network `ops-postgres`; the password in a mounted
                passfile (0600, the image's UID), never on a command line or in the environment. Written straight
                into the backup folder, then made root's like every backup file, then checked.
  check_dump()  with no network: pg_restore --list (the table of contents, when the archive was made) and one pass
                over all of its data counting each table's rows. That pass proves every data block reads back, and
                its counts are exactly the rows of the dump's own snapshot: a count(*) beside a running tenant
                would count other rows than the dump holds, and restore compares with these.
  live_counts() exact count(*) of every table, as ops with SET ROLE tenant_<t> (what restore checks afterwards)
  restore_tenant_database()  one tenant's database from one dump, repeatable after an interruption (see there).
The jobs that read a backup's files run as uid 0 without capabilities: backups are root's, 0600 (backup_format's
make_private), and root without capabilities has exactly the owner's rights. The others run as the image's UID.
A job is named like containers.volume_job's, so `recover` removes one a killed run left.
"""
import contextlib
import datetime as dt
import errno
import json
import os
import subprocess
import tempfile
import uuid
from pathlib import Path

from deployment import naming
from deployment import postgres as model
from deployment.instance import UIDS
from ops.config import tenants
from ops.config.envfile import redis_settings
from ops.config.paths import COMPOSE_PROJECT, INSTANCE, TLS
from ops.core.errors import OpsError
from ops.core.run import probe
from ops.data.journal import fault_point
from ops.deploy import containers, postgres_admin

DUMP_NAME = "db.pgdump"
# ops' role has OPS_CONNECTIONS slots (deployment/postgres.py): dumps take one each, one stays for an operator.
PARALLEL_DUMPS = model.OPS_CONNECTIONS - 1
NETWORK = naming.operator_network(naming.POSTGRES_SERVICE)
IMAGE_UID = UIDS["postgres"]
ROOT_UID = 0
CA, PASSFILE, DUMP_DIR = "/run/tenantstack/ca.crt", "/run/tenantstack/pgpass", "/dump"
PGDATA = "/var/lib/postgresql/data"  # the image's VOLUME: a tmpfs there, so no anonymous volume is made
ROWS, CREATED, VERSION = "tenantstack-rows", "tenantstack-created", "tenantstack-version"  # check_dump's own lines
LIST_FAILED = 10  # check_dump's exit code when pg_restore --list refused the archive
# Tables whose rows count: every ordinary table outside the system schemas, except those an extension owns (the
# extension's script makes them, pg_dump does not dump them). `schema.table` quoted as pg_dump quotes it (%I).
COUNT_SQL = r"""SELECT pg_catalog.format('SELECT %L, count(*) FROM %I.%I',
         pg_catalog.format('%I.%I', n.nspname, c.relname), n.nspname, c.relname)
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'r' AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\_%'
   AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                   AND d.objid = c.oid AND d.deptype = 'e')
 ORDER BY 1
\gexec
"""


def image() -> str:
    return INSTANCE.image(naming.POSTGRES_SERVICE)


def on_postgres(names) -> list[str]:
    """The tenants among `names` whose env file declares DATABASE=postgres."""
    return [n for n in names if tenants.declared(n).spec.on_postgres]


def require_server(names: list[str], what: str) -> None:
    """One line when tenants on PostgreSQL need the server and it is not running."""
    if names and not containers.is_running(naming.POSTGRES_SERVICE):
        raise OpsError(f"PostgreSQL is not running, and tenant {names[0]} keeps its database there "
                       f"(DATABASE=postgres), so the {what} cannot take it: start it with "
                       f"`./invoke up --tenant {names[0]}`, then retry")


def database_size(name: str) -> int:
    """Bytes the tenant's database takes on the server (0 when it has none): what a dump needs at most."""
    db = model.ident(naming.database_name(name))
    out = postgres_admin.superuser_sql(
        f"SELECT pg_catalog.pg_database_size(oid) FROM pg_catalog.pg_database WHERE datname = '{db}';\n",
        f"measuring tenant {name}'s PostgreSQL database", "-At")
    return int(out.strip() or 0)


# ---- the throwaway containers ---------------------------------------------------------------------------------
def _conninfo(name: str) -> str:
    """ops' connection to the tenant's database: TLS verified against the CA for the server's name (no password)."""
    return (f"host={naming.POSTGRES_SERVICE} port={naming.POSTGRES_PORT} dbname={naming.database_name(name)} "
            f"user={naming.POSTGRES_OPS_ROLE} sslmode=verify-full sslrootcert={CA} connect_timeout=10")


@contextlib.contextmanager
def _passfile(uid: int):
    """ops' password in a pgpass file only `uid` can read (0600), in a private folder, removed afterwards."""
    password = redis_settings()["POSTGRES_OPS_PASSWORD"]
    escaped = password.replace("\\", "\\\\").replace(":", "\\:")
    with tempfile.TemporaryDirectory(prefix="tenantstack-pgpass-") as tmp:
        path = Path(tmp) / "pgpass"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(f"{naming.POSTGRES_SERVICE}:{naming.POSTGRES_PORT}:*:{naming.POSTGRES_OPS_ROLE}:{escaped}\n")
        os.chown(path, uid, uid)
        yield path


def job_argv(job: str, entrypoint: str, args: list[str], *, uid: int, network: str | None,
             mounts: dict[str, str], stdin: bool = False, passfile: bool = False) -> list[str]:
    """The `docker run` of one job: hardened, the given mounts (host path -> target, `:ro` in the target).
    PGPASSFILE is a path, not a secret: the password itself is only in the mounted file."""
    argv = ["docker", "run", "--name", job, "--label", f"{containers.JOB_OWNER_LABEL}={os.getpid()}",
            "--label", f"{containers.JOB_INSTANCE_LABEL}={INSTANCE.name}", "--pull", "never",
            "--network", INSTANCE.network(network) if network else "none", "--read-only", "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges:true", "--user", f"{uid}:{uid}",
            "--tmpfs", "/tmp:rw,mode=1777", "--tmpfs", f"{PGDATA}:rw,mode=0700", *(["-i"] if stdin else []),
            *(["-e", f"PGPASSFILE={PASSFILE}"] if passfile else [])]
    for source, target in mounts.items():
        argv += ["-v", f"{source}:{target}"]
    return [*argv, "--entrypoint", entrypoint, image(), *args]


def _job(entrypoint: str, args: list[str], *, what: str, uid: int, network: str | None = None,
         mounts: dict[str, str] | None = None, stdin: str | None = None, password: bool = False,
         timeout: float = 3600) -> subprocess.CompletedProcess:
    """Run one job to its end; its exit code is read from the stopped container (see containers.volume_job: Podman's
    Docker API reports 0 for `docker run --rm` whatever happened). With password: ops' passfile mounted."""
    job = f"{COMPOSE_PROJECT}-job-{uuid.uuid4().hex[:8]}"
    mounts = dict(mounts or {})
    with contextlib.ExitStack() as stack:
        if network:
            mounts[str(TLS / "ca.crt")] = f"{CA}:ro"
        if password:
            mounts[str(stack.enter_context(_passfile(uid)))] = f"{PASSFILE}:ro"
        argv = job_argv(job, entrypoint, args, uid=uid, network=network, mounts=mounts, stdin=stdin is not None,
                        passfile=password)
        try:
            done = probe(argv, input=stdin, timeout=timeout, what=what)
            state = probe(["docker", "inspect", "--format", "{{json .State.ExitCode}}", job])
            code = json.loads(state.stdout or "null") if state.returncode == 0 else None
            if code is None:  # the container never existed: the image is missing, or the engine refused it
                if probe(["docker", "image", "inspect", "--format", "{{.Id}}", image()]).returncode != 0:
                    raise OpsError(f"{what}: the PostgreSQL image {image()} is missing (its tools run from it, never "
                                   "from the host): build it with `./invoke build --postgres`")
                code = done.returncode or 1
            return subprocess.CompletedProcess(argv, code, done.stdout, done.stderr)
        finally:
            probe(["docker", "rm", "-f", "-v", job])


def said(proc: subprocess.CompletedProcess) -> str:
    """The line of a tool's output that says what went wrong: its first error, else its last line."""
    lines = [ln.strip() for ln in (proc.stderr or proc.stdout or "").splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error:" in ln or "FATAL:" in ln or "ERROR:" in ln]
    return ((errors or lines or ["no output"])[0])[:300]


# ---- dump and check --------------------------------------------------------------------------------------------
def dump(name: str, folder: Path, log=print) -> dict:
    """pg_dump of the tenant's database into folder/db.pgdump (made root's, 0600), checked; returns its manifest
    entry without the file's path: when it was made, the server's version, the rows of each table."""
    folder.mkdir(parents=True, exist_ok=True)
    os.chown(folder, IMAGE_UID, IMAGE_UID)  # pg_dump writes as the image's UID; the folder is root's again below
    target = folder / DUMP_NAME
    fault_point("pg-dump")
    args = ["--format=custom", f"--role={naming.database_role(name)}", "--no-password",
            f"--file={DUMP_DIR}/{DUMP_NAME}", f"--dbname={_conninfo(name)}"]
    proc = _job("pg_dump", args, what=f"pg_dump of tenant {name}", uid=IMAGE_UID, network=NETWORK,
                mounts={str(folder): DUMP_DIR}, password=True)
    os.chown(folder, ROOT_UID, ROOT_UID)
    if target.exists():
        os.chown(target, ROOT_UID, ROOT_UID)
        target.chmod(0o600)
    if proc.returncode != 0:
        line = said(proc)
        if "No space left on device" in line:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))
        raise OpsError(f"pg_dump of tenant {name}'s database failed (exit {proc.returncode}): {line}")
    entry = check_dump(target, f"tenant {name}'s new dump")
    rows = sum(entry["tables"].values())
    log(f"tenant {name}: {DUMP_NAME} ({target.stat().st_size / 2**20:.1f} MiB, "
        f"{len(entry['tables'])} tables, {rows} rows, made {entry['dumped_at']})")
    return entry


CHECK_SCRIPT = f"""set -u
f={DUMP_DIR}/"$1"
pg_restore --list "$f" > /tmp/list || exit {LIST_FAILED}
sed -n -e 's/^; Archive created at /{CREATED} /p' -e 's/^;     Dumped from database version: /{VERSION} /p' /tmp/list
{{ pg_restore --data-only --file=- "$f"; echo $? > /tmp/status; }} | awk '
  inside && $0 == "\\\\." {{ printf "{ROWS}\\t%d\\t%s\\n", n, name; inside = 0; next }}
  inside {{ n++; next }}
  /^COPY .* FROM stdin;$/ {{ name = $0; sub(/^COPY /, "", name); sub(/ +(\\(.*\\) )?FROM stdin;$/, "", name);
                            n = 0; inside = 1 }}'
exit "$(cat /tmp/status)"
"""


def parse_check(stdout: str) -> dict:
    """check_dump's output: {"dumped_at": ISO time, "server_version": str, "tables": {schema.table: rows}}."""
    found = {"dumped_at": None, "server_version": None, "tables": {}}
    for line in stdout.splitlines():
        mark, _, rest = line.partition("\t" if line.startswith(ROWS) else " ")
        if mark == ROWS:
            count, _, table = rest.partition("\t")
            found["tables"][table] = int(count)
        elif mark == CREATED:  # `2026-12-07 16:57:32 UTC`, as pg_restore prints it
            when = dt.datetime.strptime(rest.strip(), "%Y-%m-%d %H:%M:%S %Z").replace(tzinfo=dt.UTC)
            found["dumped_at"] = when.isoformat(timespec="seconds")
        elif mark == VERSION:
            found["server_version"] = rest.strip()
    return found


def check_dump(path: Path, subject: str, member: str | None = None) -> dict:
    """pg_restore --list and a read of all the data of the archive at `path`, with no network; see parse_check.
    A failure is one line: `<subject> is corrupt: <member> failed <step>: <what pg_restore said> (exit N)`."""
    proc = _job("sh", ["-c", CHECK_SCRIPT, "check", path.name], what=f"pg_restore --list of {subject}",
                uid=ROOT_UID, mounts={str(path.parent.resolve()): f"{DUMP_DIR}:ro"})
    found = parse_check(proc.stdout)
    if proc.returncode != 0 or found["dumped_at"] is None:
        listed = proc.returncode != LIST_FAILED and found["dumped_at"] is not None
        step = "reading its data" if listed else "pg_restore --list"
        raise OpsError(f"{subject} is corrupt: {member or path.name} failed {step}: {said(proc)} "
                       f"(exit {proc.returncode})")
    return found


# ---- counting and restoring ---------------------------------------------------------------------------------
def _psql_as_ops(name: str, sql: str, what: str) -> str:
    args = ["-X", "-q", "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1", "--no-password", f"--dbname={_conninfo(name)}"]
    proc = _job("psql", args, what=what, uid=IMAGE_UID, network=NETWORK, stdin=sql, password=True, timeout=1800)
    if proc.returncode != 0 or "ERROR:" in (proc.stderr or ""):
        raise OpsError(f"{what} failed (exit {proc.returncode}): {said(proc)}")
    return proc.stdout


def live_counts(name: str) -> dict[str, int]:
    """schema.table -> exact count(*) of every table of the tenant's database, as ops with SET ROLE tenant_<t>."""
    out = _psql_as_ops(name, f"SET ROLE {model.ident(naming.database_role(name))};\n{COUNT_SQL}",
                       f"counting the rows of tenant {name}'s database")
    return {table: int(count) for table, _, count in (ln.rpartition("\t") for ln in out.splitlines() if "\t" in ln)}


def counts_problem(expected: dict[str, int], actual: dict[str, int]) -> str | None:
    """None when every table has exactly the rows expected; else the first difference, one line."""
    for table in sorted(set(expected) | set(actual)):
        if table not in actual:
            return f"table {table} is missing ({expected[table]} rows in the backup)"
        if table not in expected:
            return f"table {table} is not in the backup ({actual[table]} rows)"
        if expected[table] != actual[table]:
            return f"table {table} has {actual[table]} rows, the backup {expected[table]}"
    return None


def _recreate_empty(name: str, log) -> None:
    """Drop the tenant's database (its sessions ended: FORCE) and provision it again: empty, owned by its role."""
    db = model.ident(naming.database_name(name))
    postgres_admin.superuser_sql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE);\n", f"dropping tenant {name}'s database")
    found = postgres_admin.databases(tenants.known_names())
    if name not in [d.tenant for d in found]:
        raise OpsError(f"tenant {name} is not on PostgreSQL any more (DATABASE in {tenants.env_path(name).name}): "
                       "its database cannot be provisioned")
    postgres_admin.provision(postgres_admin.Prepared(found, hba_changed=False, needed=True),
                             log=lambda m: log(f"restore: {m}"))


def restore_tenant_database(name: str, dump_path: Path, tables: dict[str, int], log=print) -> dict[str, int]:
    """Replace tenant `name`'s database with the archive at dump_path, and prove it: every table's exact row count
    must equal `tables` (what the manifest recorded). Returns the counts.

    The caller stops the tenant's services first, keeps what it replaces (a dump of its own) and journals the call.
    Repeatable: an interrupted call is finished by calling it again (the database is dropped and made anew each
    time). pg_restore runs as ops with --role=tenant_<t> --no-owner, so every object belongs to the tenant's role,
    in one transaction with --exit-on-error: a dump that does not load leaves the new database empty, never half."""
    require_server([name], "restore")
    _recreate_empty(name, log)
    args = ["--exit-on-error", "--single-transaction", "--no-owner", f"--role={naming.database_role(name)}",
            "--no-password", f"--dbname={_conninfo(name)}", f"{DUMP_DIR}/{dump_path.name}"]
    proc = _job("pg_restore", args, what=f"pg_restore of tenant {name}", uid=ROOT_UID, network=NETWORK,
                mounts={str(dump_path.parent.resolve()): f"{DUMP_DIR}:ro"}, password=True)
    if proc.returncode != 0:
        raise OpsError(f"pg_restore of tenant {name}'s database failed (exit {proc.returncode}): {said(proc)}")
    counts = live_counts(name)
    problem = counts_problem(tables, counts)
    if problem:
        raise OpsError(f"tenant {name}'s database after pg_restore does not match the backup: {problem}")
    log(f"restore: tenant {name}: PostgreSQL database restored, {len(counts)} tables, "
        f"{sum(counts.values())} rows, as the backup recorded")
    return counts
