"""`invoke flush-results` deletes only old results of the named tenant, in batches; dry-run deletes nothing."""
import re
import subprocess
import time

import pytest

from deployment import naming
from tests.support import deployment as d

pytestmark = pytest.mark.usefixtures("tenants_up")
OLD, NEW = 100_000, 1_000

COUNT = """
import sqlite3
db = sqlite3.connect('file:/data/db.sqlite3?mode=ro', uri=True)
q = ("SELECT count(*) FROM django_celery_results_taskresult "
     "WHERE worker='celery@bench' AND date_done {} datetime('now', '-7 days')")
old = db.execute(q.format("<")).fetchone()[0]
new = db.execute(q.format(">=")).fetchone()[0]
print(old, new)
"""

# `old` results 30 days old and `new` fresh ones, worker 'celery@bench', straight into the tenant's real
# database with raw SQL (the ORM would take minutes); the recursive CTE yields at least one row, hence the guard.
FILL = """
import sqlite3, sys
db = sqlite3.connect('/data/db.sqlite3', timeout=30)
for count, age in ((int(sys.argv[1]), '-30 days'), (int(sys.argv[2]), '-0 days')):
    if count > 0:
        db.execute('''WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < ?)
            INSERT INTO django_celery_results_taskresult
              (task_id, status, content_type, content_encoding, result, date_done, date_created, traceback, meta,
               task_args, task_kwargs, task_name, worker, periodic_task_name)
            SELECT lower(hex(randomblob(16))), 'SUCCESS', 'application/json', 'utf-8', '{"value": 1}', w, w, NULL,
                   '{"children": []}', '[]', '{}', 'jobs.tasks.echo', 'celery@bench', NULL
            FROM s, (SELECT strftime('%Y-%m-%d %H:%M:%f', 'now', ?) AS w)''', (count, age))
db.commit()
"""


def _web(tenant: str) -> str:
    return d.container(naming.service_name(tenant, "web"))


def _python(tenant: str, code: str, *args: str) -> str:
    run = subprocess.run(["docker", "exec", _web(tenant), "python", "-c", code, *args], capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout


def _counts(tenant: str) -> tuple[int, int]:
    old, new = _python(tenant, COUNT).split()
    return int(old), int(new)


@pytest.fixture
def stale_rows():
    """100k results 30 days old and 1k new ones in tenant a, 1k old ones in tenant b (their real databases)."""
    for tenant, old, new in (("a", OLD, NEW), ("b", NEW, 0)):
        _python(tenant, FILL, str(old), str(new))
    yield
    for tenant in ("a", "b"):
        _python(tenant, "import sqlite3; db = sqlite3.connect('/data/db.sqlite3', timeout=30); "
                        "db.execute(\"DELETE FROM django_celery_results_taskresult WHERE worker='celery@bench'\"); "
                        "db.commit()")


def test_flush_deletes_old_rows_of_that_tenant_only_and_dry_run_deletes_nothing(stale_rows):
    assert _counts("a") == (OLD, NEW) and _counts("b") == (NEW, 0)
    dry = d.invoke("flush-results", "--tenant", "a", "--older-than", "7d", "--dry-run").stdout
    assert re.search(rf"would delete {OLD} task results", dry), dry
    assert _counts("a") == (OLD, NEW)
    out = d.invoke("flush-results", "--tenant", "a", "--older-than", "7d").stdout
    match = re.search(r"deleted (\d+) task results .* \((\d+) rows/s\)", out)
    assert match and int(match.group(1)) == OLD, out
    assert _counts("a") == (0, NEW)
    assert _counts("b") == (NEW, 0)  # another tenant's rows untouched


def test_flush_removes_idle_celery_keys_under_that_tenant_prefix_only():
    c = d.client()
    stale = [naming.key_prefix(t) + k for t in ("a", "b") for k in ("celery-task-meta-x1", "abc.reply.celery.pidbox")]
    keep = [naming.key_prefix("a") + "bk:keep", naming.key_prefix("a") + "_kombu.binding.flushcheck"]
    for key in stale + keep:
        c.set(key, "v")
    time.sleep(3)
    try:
        out = d.invoke("flush-results", "--tenant", "a", "--older-than", "2s", "--dry-run").stdout
        found = re.search(r"Redis: would remove (\d+) stale keys under a's prefix", out)
        assert found and int(found.group(1)) >= 2, out  # ours, plus any reply queue left by earlier `inspect` calls
        assert c.exists(*stale, *keep) == len(stale) + len(keep)
        d.invoke("flush-results", "--tenant", "a", "--older-than", "2s")
        assert c.exists(*stale[:2]) == 0  # tenant a's stale keys gone
        assert c.exists(*stale[2:], *keep) == 2 + len(keep)  # b's and a's live keys untouched
    finally:
        c.delete(*stale, *keep)


def test_bad_duration_and_missing_tenant_are_one_line():
    proc = d.invoke("flush-results", "--tenant", "a", "--older-than", "7days", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("error: --older-than '7days' is not a duration: "
                                   "use a whole number followed by s, m, h, d or w, e.g. 7d")
    proc = d.invoke("flush-results", "--older-than", "7d", check=False)
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error: name a tenant with --tenant NAME")
