"""Benchmark drivers that run inside a tenant container: `python -m jobs.bench burst|paced|flush ...`.

Each prints one JSON object on stdout; `invoke bench` (ops/bench/run.py) runs them side by side.
  burst N            publish N no-op tasks as fast as possible, wait until all are SUCCESS in the database
  paced RATE SECS    publish at a steady RATE per second for SECS seconds; queue latency percentiles
  flush ROWS         batched flush vs django-celery-results' delete_expired on identical ROWS-row copies
"""
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC


def _setup():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tenantstack.settings")
    import django

    django.setup()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def _wait(run: str, n: int, since: float, timeout: float) -> tuple[float, list[float]]:
    """When the last of n SUCCESS rows of this run was done (epoch); queue latencies (start - sent) of all.

    Polls gently (the poll competes with the workers for the CPU and the database) and takes the finish
    time from the rows' own date_done, so the polling interval does not blur the measurement.
    """
    from datetime import datetime

    from django.db.models import Max
    from django_celery_results.models import TaskResult

    rows = TaskResult.objects.filter(date_done__gte=datetime.fromtimestamp(since, UTC),
                                     task_name="jobs.tasks.noop", status="SUCCESS", task_kwargs__contains=run)
    deadline = time.monotonic() + timeout
    while (done := rows.count()) < n:
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: only {done} of {n} tasks finished within {timeout:.0f}s")
        time.sleep(0.25)
    finished = rows.aggregate(last=Max("date_done"))["last"].timestamp()
    latencies = []
    for result in rows.values_list("result", flat=True).iterator(chunk_size=2000):
        r = json.loads(result)
        latencies.append(r["started"] - r["sent"])
    return finished, latencies


def burst(n: int, timeout: float = 600) -> dict:
    from jobs.tasks import noop

    run = uuid.uuid4().hex
    t0 = time.time()
    with noop.app.producer_or_acquire() as producer:
        for _ in range(n):
            noop.apply_async(args=[time.time()], kwargs={"run": run}, producer=producer)
    enqueued = time.time()
    finished, latencies = _wait(run, n, t0, timeout)
    return {"n": n, "enqueue_per_s": n / (enqueued - t0), "tasks_per_s": n / (finished - t0),
            "seconds": finished - t0, "latency_p50_ms": 1000 * _percentile(latencies, 0.50),
            "latency_p99_ms": 1000 * _percentile(latencies, 0.99)}


def paced(rate: float, seconds: float, timeout: float = 300) -> dict:
    from jobs.tasks import noop

    run = uuid.uuid4().hex
    n = int(rate * seconds)
    started = time.time()
    t0 = time.monotonic()
    with noop.app.producer_or_acquire() as producer:
        for i in range(n):
            delay = t0 + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            noop.apply_async(args=[time.time()], kwargs={"run": run}, producer=producer)
    _, latencies = _wait(run, n, started, timeout)
    return {"n": n, "offered_per_s": rate, "latency_p50_ms": 1000 * _percentile(latencies, 0.50),
            "latency_p99_ms": 1000 * _percentile(latencies, 0.99), "latency_max_ms": 1000 * max(latencies)}


FLUSH_CHILD = """
import json, os, resource, sys, time
os.environ["DJANGO_SETTINGS_MODULE"] = "tenantstack.settings"
import django; django.setup()
from django.utils import timezone
from datetime import timedelta
method, cutoff_days = sys.argv[1], 7
t0 = time.monotonic()
if method == "batched":
    from jobs.cleanup import delete_results_older_than
    deleted = delete_results_older_than(timezone.now() - timedelta(days=cutoff_days))["task_results"]
else:
    from django_celery_results.models import TaskResult
    before = TaskResult.objects.count()
    TaskResult.objects.delete_expired(timedelta(days=cutoff_days))
    deleted = before - TaskResult.objects.count()
print(json.dumps({"deleted": deleted, "seconds": time.monotonic() - t0,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _env(data_dir: str) -> dict:
    """The tenant's own settings (SQLite options included), pointed at a scratch data directory."""
    # DATABASE_URL_FILE too: in the containers the file form is set, and it wins over the variable.
    return {**os.environ, "DATA_DIR": data_dir, "DATABASE_URL": "", "DATABASE_URL_FILE": ""}


def _fill(data_dir: str, rows: int, fresh: int) -> None:
    """A results database with `rows` results 30 days old and `fresh` new ones (raw SQL: fast)."""
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], env=_env(data_dir), check=True)
    import sqlite3

    db = sqlite3.connect(os.path.join(data_dir, "db.sqlite3"))
    db.execute("PRAGMA journal_mode=WAL")
    old = "strftime('%Y-%m-%d %H:%M:%f', 'now', '-30 days')"
    new = "strftime('%Y-%m-%d %H:%M:%f', 'now')"
    for count, when in ((rows, old), (fresh, new)):
        if count <= 0:
            continue  # the recursive CTE below always yields at least one row
        db.execute(f"""WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {count})
            INSERT INTO django_celery_results_taskresult
              (task_id, status, content_type, content_encoding, result, date_done, date_created, traceback, meta,
               task_args, task_kwargs, task_name, worker, periodic_task_name)
            SELECT lower(hex(randomblob(16))), 'SUCCESS', 'application/json', 'utf-8', '{{"value": 1}}', {when}, {when},
                   NULL, '{{"children": []}}', '[]', '{{}}', 'jobs.tasks.echo', 'celery@bench', NULL FROM s""")
    db.commit()
    db.close()


def flush(rows: int, fresh: int = 1000) -> dict:
    import shutil

    data = os.environ.get("DATA_DIR", "/data")
    out = {"rows": rows}
    dirs = {m: os.path.join(data, f".bench-flush-{m}") for m in ("batched", "delete_expired")}
    try:
        for d in dirs.values():
            shutil.rmtree(d, ignore_errors=True)
            os.makedirs(d)
        _fill(dirs["batched"], rows, fresh)
        shutil.copyfile(os.path.join(dirs["batched"], "db.sqlite3"), os.path.join(dirs["delete_expired"], "db.sqlite3"))
        for method, d in dirs.items():
            child = subprocess.run([sys.executable, "-c", FLUSH_CHILD, method], env=_env(d), capture_output=True,
                                   check=False, text=True)
            if child.returncode != 0:
                raise SystemExit(f"bench: {method} failed: {(child.stderr.strip().splitlines() or ['?'])[-1]}")
            report = json.loads(child.stdout.strip().splitlines()[-1])
            report["rows_per_s"] = report["deleted"] / report["seconds"] if report["seconds"] else 0
            out[method] = report
    finally:
        for d in dirs.values():
            shutil.rmtree(d, ignore_errors=True)
    return out


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in ("burst", "paced", "flush"):
        raise SystemExit(__doc__)
    _setup()
    command, args = argv[0], [float(a) for a in argv[1:]]
    result = {"burst": lambda: burst(int(args[0])), "paced": lambda: paced(args[0], args[1]),
              "flush": lambda: flush(int(args[0]))}[command]()
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
