"""One PostgreSQL tenant backed up and restored alone: its keys and every row of its database come back (through the
per-tenant pg_restore step), the tenant beside it on the same server keeps its own rows and keys."""
import json
import re
from pathlib import Path

import pytest

from deployment import naming
from ops.config.paths import BACKUPS
from tests.support import deployment as d
from tests.support import postgres

pytestmark = pytest.mark.usefixtures("postgres_tenants_up")
NOTES = ("DROP TABLE IF EXISTS notes; CREATE TABLE notes (id bigserial PRIMARY KEY, body text NOT NULL);"
         "INSERT INTO notes (body) SELECT 'note-' || g FROM generate_series(1, 20) g;")


def test_a_postgres_tenant_is_restored_alone_with_every_row():
    c = d.client()
    kept = [d.post_echo("pgb", f"kept-{i}") for i in range(3)]
    d.wait_for_results("pgb", kept)
    postgres.tenant_sql("pgb", NOTES)
    postgres.tenant_sql("pgc", NOTES)
    c.set(naming.key_prefix("pgb") + "pgtr:key", "backed up")
    out = d.invoke("backup", "--tenant", "pgb").stdout
    path = Path(re.search(r"backup: tenant pgb: verified: (\S+)", out).group(1))
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["tenant_sections"]["pgb"]["database"] == "postgres" and manifest["postgres"]["pgb"]["tables"][
        "public.notes"] == 20, manifest
    try:
        later = d.post_echo("pgb", "after the backup")
        d.wait_for_results("pgb", [later])
        postgres.tenant_sql("pgb", "INSERT INTO notes (body) VALUES ('newer'); DELETE FROM notes WHERE id <= 5;")
        postgres.tenant_sql("pgc", "INSERT INTO notes (body) VALUES ('pgc keeps this')")
        c.set(naming.key_prefix("pgb") + "pgtr:key", "changed")
        c.set(naming.key_prefix("pgc") + "pgtr:key", "pgc's")

        out = d.invoke("restore", str(path), "--tenant", "pgb", "--yes").stdout
        assert "PostgreSQL database restored" in out, out
        assert postgres.tenant_sql("pgb", "SELECT count(*), min(id), max(id) FROM notes").strip() == "20|1|20"
        assert d.task_status("pgb", later)[0] == 404 and all(d.task_status("pgb", t)[0] == 200 for t in kept)
        assert c.get(naming.key_prefix("pgb") + "pgtr:key") == b"backed up"
        # the neighbour's rows and keys stay
        assert postgres.tenant_sql("pgc", "SELECT count(*) FROM notes").strip() == "21"
        assert c.get(naming.key_prefix("pgc") + "pgtr:key") == b"pgc's"
    finally:
        c.delete(naming.key_prefix("pgb") + "pgtr:key", naming.key_prefix("pgc") + "pgtr:key")
        for t in ("pgb", "pgc"):
            postgres.tenant_sql(t, "DROP TABLE IF EXISTS notes")
        assert BACKUPS.is_dir()
