"""PostgreSQL tenants in `./invoke backup` and `./invoke restore`: a dump per tenant beside Redis' snapshot, restored
with every row, sequences going on and objects owned by the tenant's role; a full disk or a stopped server during a
backup ends in one line with nothing kept."""
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from deployment import naming
from ops.config.paths import BACKUPS
from ops.data import journal as jn
from ops.deploy import redis_admin
from tests.support import deployment as d
from tests.support import faults, postgres

pytestmark = pytest.mark.usefixtures("postgres_tenants_up")
NOTES = ("CREATE TABLE notes (id bigserial PRIMARY KEY, body text NOT NULL);"
         "INSERT INTO notes (body) SELECT 'note-' || g FROM generate_series(1, 50) g;")


def _backup() -> Path:
    out = d.invoke("backup").stdout
    match = re.search(r"verified in [\d.]+s: (\S+)", out)
    assert match, out
    return BACKUPS / match.group(1).rsplit("/", 1)[-1]


def _pg_restore_list(dump: Path) -> str:
    """The archive's table of contents, read by the server image's pg_restore with no network."""
    proc = subprocess.run(["docker", "run", "--rm", "--network", "none", "--user", "0:0", "--cap-drop", "ALL",
                           "-v", f"{dump.parent}:/d:ro", "--entrypoint", "pg_restore", postgres.IMAGE, "--list",
                           f"/d/{dump.name}"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "Archive created at" in proc.stdout, proc.stderr
    return proc.stdout


def test_round_trip_brings_back_every_row_with_sequences_and_owners(tmp_path):
    before = {t: [d.post_echo(t, f"pg-backup-{t}-{i}") for i in range(3)] for t in ("a", "pgb", "pgc")}
    results = {t: d.wait_for_results(t, ids) for t, ids in before.items()}
    for t in ("pgb", "pgc"):
        postgres.tenant_sql(t, "DROP TABLE IF EXISTS notes;" + NOTES)
    try:
        path = _backup()
        manifest = json.loads((path / "manifest.json").read_text())
        assert manifest["format"] == 3 and set(manifest["tenants"]) >= {"a", "pgb", "pgc"}, manifest
        assert set(manifest["postgres"]) == {"pgb", "pgc"} and "tenants/a/db.sqlite3" in manifest["files"]
        for t in ("pgb", "pgc"):
            entry = manifest["postgres"][t]
            assert entry["file"] == f"tenants/{t}/db.pgdump" and entry["file"] in manifest["files"], entry
            tables = entry["tables"]
            assert tables["public.notes"] == 50 and tables["public.django_celery_results_taskresult"] >= 3, tables
            # The dump began after Redis' snapshot (pg_restore dates the archive to the second).
            assert entry["dumped_at"] >= manifest["redis_snapshot_at"][:19], (entry, manifest["redis_snapshot_at"])
            assert f"TABLE DATA public notes {naming.database_role(t)}" in _pg_restore_list(path / entry["file"])

        # Changes after the backup: rows added, a table dropped, tasks that the restore must forget.
        postgres.tenant_sql("pgb", "INSERT INTO notes (body) SELECT 'later-' || g FROM generate_series(1, 7) g;")
        postgres.tenant_sql("pgc", "DROP TABLE notes;")
        after = {t: [d.post_echo(t, f"after-{t}")] for t in ("a", "pgb")}
        for t, ids in after.items():
            d.wait_for_results(t, ids)

        # The restore is killed as it starts on the PostgreSQL databases (Redis and SQLite already put back):
        # every other task refuses until `recover`, which does the put-back again and finishes it.
        env = {**os.environ, jn.FAULT_VAR: "restoring-postgres"}
        killed = subprocess.run([d.INVOKE, "restore", path.name, "--yes"], cwd=d.ROOT, env=env, capture_output=True,
                                text=True, timeout=900)
        assert killed.returncode != 0 and "fault: restoring-postgres" in killed.stdout, killed.stdout[-2000:]
        refused = d.invoke("up", check=False)
        assert refused.returncode != 0 and "recover" in refused.stderr, refused.stderr
        out = d.invoke("recover").stdout
        assert f"finished: {path.name} is restored" in out, out
        for t in ("pgb", "pgc"):
            assert re.search(rf"tenant {t}: PostgreSQL database restored, \d+ tables, \d+ rows, as the "
                             "backup recorded", out), out

        assert postgres.tenant_sql("pgb", "SELECT count(*), max(id) FROM notes;") == "50|50"
        assert postgres.tenant_sql("pgc", "SELECT count(*) FROM notes;") == "50"
        # The sequence goes on after the restored rows: no duplicate key; the objects are the tenant role's.
        inserted = postgres.tenant_sql("pgb", "INSERT INTO notes (body) VALUES ('after restore') RETURNING id;")
        assert inserted.splitlines()[0] == "51", inserted
        owners = postgres.tenant_sql("pgb", "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public';")
        assert owners == naming.database_role("pgb"), owners
        for t, ids in before.items():
            assert {i: d.task_status(t, i) for i in ids} == {i: (200, results[t][i]) for i in ids}
        for t, ids in after.items():
            assert all(d.task_status(t, i)[0] == 404 for i in ids), t
        # The tenant works on its restored database: a new task's result gets a new id from the restored sequence.
        d.wait_for_results("pgb", [d.post_echo("pgb", "after restore")])
    finally:
        for t in ("pgb", "pgc"):
            postgres.as_tenant(t, "DROP TABLE IF EXISTS notes;")


# ---- faults ----------------------------------------------------------------------------------------------------
def test_a_backup_while_postgresql_is_down_names_the_tenant_and_keeps_nothing():
    server = postgres.SERVER
    subprocess.run(["docker", "stop", server], check=True, capture_output=True)
    try:
        proc = d.invoke("backup", check=False)
        line = faults.one_error_line(proc.stderr)
        assert proc.returncode == 2 and line.startswith("error: PostgreSQL is not running, and tenant pgb keeps its "
                                                        "database there"), line
        assert "./invoke up --tenant pgb" in line and not faults.partials() and not jn.JOURNAL.exists()
    finally:
        subprocess.run(["docker", "start", server], check=True, capture_output=True)
        from ops.deploy import health

        health.wait([naming.POSTGRES_SERVICE, *(naming.service_name(t, "web") for t in ("pgb", "pgc"))], 120,
                    log=lambda m: None)


@pytest.fixture
def backups_disk_just_big_enough():
    """A tmpfs on the instance's backups folder with room for the backup's own space check and little more."""
    from ops.data import backup

    need = int(backup.expected_size(backup.running_tenants()) * 1.25) + (24 << 20)
    BACKUPS.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={need // 1024}k,mode=0700", "tmpfs", str(BACKUPS)],
                   check=True)
    try:
        yield
    finally:
        subprocess.run(["umount", str(BACKUPS)], check=True)


def test_a_full_disk_during_the_dumps_ends_in_one_line_and_keeps_nothing(backups_disk_just_big_enough, tmp_path):
    setting = redis_admin.config_get(d.client(), "auto-aof-rewrite-percentage")
    proc = faults.stopped_at(["backup"], "pg-dump", tmp_path, timeout=300)
    faults.fill_disk(BACKUPS / "filler")  # another process fills the disk as the dumps begin
    code, out, err = faults.resume(proc, tmp_path)
    line = faults.one_error_line(err)
    assert code == 2 and "no space left on the device" in line and line.endswith("nothing was kept"), line
    assert "fault: pg-dump" in out
    assert not faults.partials() and not jn.JOURNAL.exists()
    assert redis_admin.config_get(d.client(), "auto-aof-rewrite-percentage") == setting  # the journal's undo
    (BACKUPS / "filler").unlink()
