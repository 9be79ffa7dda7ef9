"""`invoke tenant-migrate-db <t> --to postgres` moves a SQLite tenant's every row to its own PostgreSQL database (an
interrupted one is rolled back by `recover`), and `invoke flush-results` deletes a PostgreSQL tenant's old results.

One throwaway tenant `mig` (on SQLite, 10k+ results, groups and users put straight into its real database) serves
the migration tests in order: the refusals, a migration killed after its copy and rolled back, then a whole one."""
import json
import os
import re
import subprocess
import time

import pytest

from deployment import naming
from ops.config.envfile import read_env
from ops.config.tenants import env_path
from ops.data import journal as jn
from tests.support import deployment as d
from tests.support import postgres, tenant_lifecycle

pytestmark = pytest.mark.usefixtures("postgres_tenants_up")
MIG = "mig"
RESULTS, GROUPS, USERS = 10_000, 100, 50

# Rows straight into the tenant's SQLite database with raw SQL (the ORM, or real tasks, would take minutes).
FILL = """
import sqlite3, sys
results, groups, users = map(int, sys.argv[1:])
db = sqlite3.connect('/data/db.sqlite3', timeout=30)
rows = "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < ?) "
db.execute(rows + '''INSERT INTO django_celery_results_taskresult (task_id, status, content_type, content_encoding,
    result, date_done, date_created, traceback, meta, task_args, task_kwargs, task_name, worker, periodic_task_name)
    SELECT lower(hex(randomblob(16))), 'SUCCESS', 'application/json', 'utf-8', '{"value": 1}', w, w, NULL,
           '{"children": []}', '[]', '{}', 'jobs.tasks.echo', 'celery@fill', NULL
    FROM s, (SELECT strftime('%Y-%m-%d %H:%M:%f', 'now', '-30 days') AS w)''', (results,))
db.execute(rows + '''INSERT INTO django_celery_results_groupresult (group_id, date_created, date_done, content_type,
    content_encoding, result) SELECT lower(hex(randomblob(16))), w, w, 'application/json', 'utf-8', '[]'
    FROM s, (SELECT strftime('%Y-%m-%d %H:%M:%f', 'now', '-30 days') AS w)''', (groups,))
db.execute(rows + '''INSERT INTO auth_user (password, last_login, is_superuser, username, last_name, email, is_staff,
    is_active, date_joined, first_name)
    SELECT '!', NULL, 0, 'fill' || i, '', '', i % 2, 1, strftime('%Y-%m-%d %H:%M:%f', 'now'), 'F' FROM s''', (users,))
db.commit()
"""
# Every table of the tenant's SQLite file and its rows (read-only: the file must not change).
SQLITE_COUNTS = """
import json, sqlite3
db = sqlite3.connect('file:/data/db.sqlite3?mode=ro', uri=True)
names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
         if not r[0].startswith('sqlite_')]
print(json.dumps({t: db.execute('SELECT count(*) FROM "%s"' % t).fetchone()[0] for t in names}))
"""
PG_COUNTS = ("SELECT table_name, (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I.%I', "
             "table_schema, table_name), false, true, '')))[1]::text FROM information_schema.tables "
             "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'")


def _web(tenant: str) -> str:
    return d.container(naming.service_name(tenant, "web"))


def _python(tenant: str, code: str, *args: str) -> str:
    run = subprocess.run(["docker", "exec", "-i", _web(tenant), "python", "-", *args], input=code,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout


def _sqlite_counts() -> dict[str, int]:
    return json.loads(_python(MIG, SQLITE_COUNTS))


def _pg_counts() -> dict[str, int]:
    out = postgres.superuser(PG_COUNTS + ";\n", db=naming.database_name(MIG))
    return {table: int(n) for table, n in (line.split("|") for line in out.splitlines())}


def _database() -> str:
    return read_env(env_path(MIG)).get("DATABASE", "")


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    lines = proc.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("error: "), proc.stderr[-2000:]
    return lines[-1]


@pytest.fixture(scope="module")
def mig():
    """Tenant `mig` on SQLite, running, with RESULTS results, GROUPS groups and USERS users of its own."""
    try:
        tenant_lifecycle.add(MIG)
        d.invoke("up", "--tenant", MIG)
        _python(MIG, FILL, str(RESULTS), str(GROUPS), str(USERS))
        yield MIG
    finally:
        tenant_lifecycle.remove(MIG)


@pytest.fixture
def env_edit(mig):
    """Change rows of mig's env file for one test; the file is put back as it was."""
    path = env_path(MIG)
    before = path.read_text()

    def edit(**rows):
        text = before
        for key, value in rows.items():
            text = re.sub(rf"(?m)^{key}=.*$", f"{key}={value}", text)
        path.write_text(text)
    yield edit
    path.write_text(before)


def test_refusals_are_one_line_and_change_nothing(env_edit):
    cases = [(["nosuch", "--to", "postgres"], "unknown tenant 'nosuch'"),
             (["pgb", "--to", "postgres"], "tenant pgb is on PostgreSQL already"),
             ([MIG, "--to", "mysql"], "--to 'mysql'")]
    for args, said in cases:
        assert said in _one_error_line(d.invoke("tenant-migrate-db", *args, check=False))
    env_edit(DATABASE_CONNECTION_LIMIT="1000")
    assert "above the 197 connections" in _one_error_line(d.invoke("tenant-migrate-db", MIG, "--to", "postgres",
                                                                    check=False))
    env_edit(DATABASE_URL="sqlite:////data/other.sqlite3")
    assert "uses DATABASE_URL" in _one_error_line(d.invoke("tenant-migrate-db", MIG, "--to", "postgres", check=False))
    assert _database() == "sqlite"
    assert postgres.superuser(f"SELECT count(*) FROM pg_database WHERE datname = '{naming.database_name(MIG)}'") == "0"


def test_migration_killed_after_the_copy_is_rolled_back_by_recover(mig):
    before = _sqlite_counts()
    env = {**os.environ, jn.FAULT_VAR: "migrate-copied"}
    killed = subprocess.run([d.INVOKE, "tenant-migrate-db", MIG, "--to", "postgres"], cwd=d.ROOT, env=env,
                            capture_output=True, text=True, timeout=900)
    assert killed.returncode != 0 and "fault: migrate-copied" in killed.stdout, killed.stdout[-2000:]
    assert "copy: table django_celery_results_taskresult" in killed.stdout  # the copy had committed
    refused = _one_error_line(d.invoke("up", "--tenant", MIG, check=False))
    assert "interrupted" in refused and "./invoke recover" in refused
    out = d.invoke("recover").stdout
    assert f"tenant {MIG} is on SQLite as before" in out, out
    assert _database() == "sqlite"
    assert postgres.superuser(f"SELECT count(*) FROM pg_database WHERE datname = '{naming.database_name(MIG)}'") == "0"
    assert d.inspect_running(naming.service_name(MIG, "web"))
    after = _sqlite_counts()
    assert after["django_celery_results_taskresult"] >= before["django_celery_results_taskresult"] >= RESULTS
    assert {t: n for t, n in after.items() if t != "django_celery_results_taskresult"} == \
        {t: n for t, n in before.items() if t != "django_celery_results_taskresult"}  # beat adds results meanwhile
    task = d.post_echo(MIG, "still-on-sqlite")
    d.wait_for_results(MIG, [task])


def test_migration_moves_every_row_and_the_tenant_works_on_postgres(mig):
    server_started = d.inspect(postgres.SERVER)["State"]["StartedAt"]
    out = d.invoke("tenant-migrate-db", MIG, "--to", "postgres", timeout=900).stdout
    # the running server joined the tenant's network live: pgb and pgc kept their connections
    assert d.inspect(postgres.SERVER)["State"]["StartedAt"] == server_started
    assert f"PostgreSQL joined network {naming.tenant_network(MIG)} while running" in out
    assert re.search(r"copy: table django_celery_results_taskresult: \d+ rows", out), out[-3000:]
    assert "/data/db.sqlite3" in out and "stays on volume" in out
    assert _database() == "postgres"
    in_sqlite, in_pg = _sqlite_counts(), _pg_counts()  # the SQLite file is still there, as the copy left it
    results = "django_celery_results_taskresult"  # beat's heartbeats go on into PostgreSQL: the copied ones counted
    last_copied = _python(MIG, "import sqlite3; print(sqlite3.connect('file:/data/db.sqlite3?mode=ro', uri=True)"
                               ".execute('SELECT max(date_done) FROM django_celery_results_taskresult').fetchone()[0])")
    in_pg[results] = int(postgres.superuser(f"SELECT count(*) FROM {results} WHERE date_done <= "
                                            f"'{last_copied.strip()}+00'", db=naming.database_name(MIG)))
    assert in_pg == in_sqlite
    assert in_pg["django_celery_results_taskresult"] >= RESULTS and in_pg["auth_user"] >= USERS
    assert in_pg["django_celery_results_groupresult"] == GROUPS and in_pg["django_migrations"] > 0
    # Sequences: a new row through the app gets the next id, past every copied one.
    db = naming.database_name(MIG)
    last = int(postgres.superuser("SELECT max(id) FROM auth_user", db=db))
    shell = subprocess.run(["docker", "exec", _web(MIG), "python", "-m", "tenantstack.manage", "shell", "-c",
                            "from django.contrib.auth.models import User; "
                            "print(User.objects.create(username='after-migration').pk)"],
                           capture_output=True, text=True, timeout=120)
    assert shell.returncode == 0, shell.stderr[-2000:]
    assert int(shell.stdout.split()[-1]) == last + 1
    # web, worker and beat on PostgreSQL: a new task's result and beat's next heartbeat land there.
    started = postgres.superuser("SELECT now()")
    task = d.post_echo(MIG, "on-postgres")
    assert d.wait_for_results(MIG, [task])[task]["result"]["value"] == "on-postgres"
    assert postgres.superuser(f"SELECT count(*) FROM django_celery_results_taskresult WHERE task_id = '{task}'",
                              db=db) == "1"
    deadline = time.monotonic() + 60
    while postgres.superuser("SELECT count(*) FROM django_celery_results_taskresult WHERE task_name = "
                             f"'tenantstack.heartbeat' AND date_done > '{started}'", db=db) == "0":
        assert time.monotonic() < deadline, "no heartbeat from beat reached PostgreSQL within 60 s"
        time.sleep(2)


def test_flush_results_on_postgres_deletes_old_rows_in_batches_and_dry_run_deletes_nothing():
    db, old, new = naming.database_name("pgb"), 3000, 10

    def fill(count: int, age: str) -> None:
        postgres.superuser(
            "INSERT INTO django_celery_results_taskresult (task_id, status, content_type, content_encoding, result, "
            "date_done, date_created, meta, task_args, task_kwargs, task_name, worker) SELECT md5(random()::text), "
            "'SUCCESS', 'application/json', 'utf-8', '{}', now() - interval '" + age + "', now(), '{}', '[]', '{}', "
            f"'jobs.tasks.echo', 'celery@flush' FROM generate_series(1, {count});", db=db)

    def counts() -> tuple[int, int]:
        q = "SELECT count(*) FROM django_celery_results_taskresult WHERE worker = 'celery@flush' AND date_done {} " \
            "now() - interval '7 days';"
        return int(postgres.superuser(q.format("<"), db=db)), int(postgres.superuser(q.format(">="), db=db))

    fill(old, "30 days")
    fill(new, "1 hour")
    try:
        assert counts() == (old, new)
        dry = d.invoke("flush-results", "--tenant", "pgb", "--older-than", "7d", "--dry-run").stdout
        assert re.search(rf"would delete {old} task results", dry), dry
        assert counts() == (old, new)
        out = d.invoke("flush-results", "--tenant", "pgb", "--older-than", "7d", "--batch-size", "500").stdout
        assert re.search(rf"deleted {old} task results", out), out
        assert counts() == (0, new)
    finally:
        postgres.superuser("DELETE FROM django_celery_results_taskresult WHERE worker = 'celery@flush';", db=db)
