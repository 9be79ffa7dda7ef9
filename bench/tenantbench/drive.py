"""Load drivers, run in a bench driver container: `python -m tenantbench.drive COMMAND ARGS`.

Each prints one JSON object as its last line; ops/bench (on the host) runs them and reads the engine's CPU
accounting around them. `burst` also prints `ready` just before its first publish and `done` the moment the
last result is stored, so the host reads the CPU counters around exactly the work (not Python's start-up).
  burst N              publish N no-op tasks as fast as possible, wait until all are SUCCESS in the database
  paced RATE SECONDS   publish at a steady RATE per second; end-to-end latency (published -> result stored)
                       percentiles, and for the slowest 1 % how much was queue wait and how much result write
  enqueue N            publish N no-op tasks and return (nothing consumes them: Redis memory per queued task)
  fill ROWS            ROWS results 30 days old, worker 'celery@bench', in this tenant's database (raw SQL)
  flush METHOD         delete results older than 7 days: `batched` (tenantstack.cleanup, what flush-results runs)
                       or `delete_expired` (django-celery-results' own)
"""
import json
import os
import sqlite3
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tenantstack.settings")
POLL = 0.25  # seconds between result counts: gentle, the poll competes with the worker for CPU and the database
STALE_DAYS, CUTOFF_DAYS = 30, 7
FILL_SQL = """WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < ?)
    INSERT INTO django_celery_results_taskresult
      (task_id, status, content_type, content_encoding, result, date_done, date_created, traceback, meta,
       task_args, task_kwargs, task_name, worker, periodic_task_name)
    SELECT lower(hex(randomblob(16))), 'SUCCESS', 'application/json', 'utf-8', '{"value": 1}', w, w,
           NULL, '{"children": []}', '[]', '{}', 'jobs.tasks.echo', 'celery@bench', NULL
    FROM s, (SELECT strftime('%Y-%m-%d %H:%M:%f', 'now', ?) AS w)"""


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def _results(run: str, since: float):
    from django_celery_results.models import TaskResult

    return TaskResult.objects.filter(date_done__gte=datetime.fromtimestamp(since, UTC), status="SUCCESS",
                                     result__contains=run)


def _wait(run: str, n: int, since: float, timeout: float) -> float:
    """Poll until n results of this run are stored; when the last one was (epoch, from the rows' own date_done)."""
    from django.db.models import Max

    rows = _results(run, since)
    deadline = time.monotonic() + timeout
    while (done := rows.count()) < n:
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: only {done} of {n} tasks finished within {timeout:.0f}s")
        time.sleep(POLL)
    return rows.aggregate(last=Max("date_done"))["last"].timestamp()


def _publish(noop, run: str, n: int, rate: float | None = None) -> None:
    t0 = time.monotonic()
    with noop.app.producer_or_acquire() as producer:
        for i in range(n):
            if rate:
                delay = t0 + i / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            noop.apply_async(args=[time.time(), run], producer=producer)


def burst(n: int, timeout: float = 900) -> dict:
    from tenantbench.worker import noop

    run = uuid.uuid4().hex
    print("ready", flush=True)
    t0 = time.time()
    _publish(noop, run, n)
    enqueued = time.time()
    finished = _wait(run, n, t0, timeout)
    print("done", flush=True)
    return {"n": n, "enqueue_per_s": n / (enqueued - t0), "tasks_per_s": n / (finished - t0),
            "seconds": finished - t0}


def paced(rate: float, seconds: float, raw: bool = False, timeout: float = 300) -> dict:
    from tenantbench.worker import noop

    run = uuid.uuid4().hex
    n = max(1, int(rate * seconds))
    since = time.time()
    _publish(noop, run, n, rate)
    _wait(run, n, since, timeout)
    samples = []  # (started epoch, queue wait s, result write s): write = result stored - task started
    for result, done in _results(run, since).values_list("result", "date_done").iterator(chunk_size=2000):
        r = json.loads(result)
        samples.append((r["started"], r["started"] - r["sent"], done.timestamp() - r["started"]))
    total = [q + w for _, q, w in samples]
    p99 = _percentile(total, 0.99)
    tail = [(q, w) for _, q, w in samples if q + w >= p99]
    queue_ms = 1000 * sum(q for q, _ in tail) / len(tail)
    write_ms = 1000 * sum(w for _, w in tail) / len(tail)
    out = {"n": n, "offered_per_s": rate, "p50_ms": 1000 * _percentile(total, 0.5), "p99_ms": 1000 * p99,
           "max_ms": 1000 * max(total), "write_p99_ms": 1000 * _percentile([w for _, _, w in samples], 0.99),
           "tail_queue_ms": queue_ms, "tail_write_ms": write_ms,
           "p99_waits_on": "queue (broker to worker)" if queue_ms >= write_ms else "result write (database)"}
    if raw:
        out["samples"] = samples
    return out


def enqueue(n: int) -> dict:
    from tenantbench.worker import noop

    t0 = time.monotonic()
    _publish(noop, uuid.uuid4().hex, n)
    return {"n": n, "seconds": time.monotonic() - t0}


def fill(rows: int) -> dict:
    """Stale rows straight into SQLite: the ORM would take minutes for a million."""
    from django.conf import settings

    t0 = time.monotonic()
    db = sqlite3.connect(settings.DATABASES["default"]["NAME"], timeout=60)
    db.execute(FILL_SQL, (rows, f"-{STALE_DAYS} days"))
    db.commit()
    db.close()
    return {"rows": rows, "seconds": time.monotonic() - t0}


def flush(method: str) -> dict:
    from django.utils import timezone

    cutoff = timedelta(days=CUTOFF_DAYS)
    started = time.time()
    if method == "batched":
        from tenantstack.cleanup import delete_results_older_than

        deleted = delete_results_older_than(timezone.now() - cutoff)["task_results"]
    elif method == "delete_expired":
        from django_celery_results.models import TaskResult

        stale = TaskResult.objects.filter(date_done__lt=timezone.now() - cutoff)
        deleted = stale.count()
        TaskResult.objects.delete_expired(cutoff)
    else:
        raise SystemExit(f"bench: unknown flush method {method!r}: batched or delete_expired")
    ended = time.time()
    return {"method": method, "deleted": deleted, "started": started, "ended": ended,
            "seconds": ended - started, "rows_per_s": deleted / (ended - started) if ended > started else 0.0}


COMMANDS = {
    "burst": lambda a: burst(int(a[0])),
    "paced": lambda a: paced(float(a[0]), float(a[1]), raw="--raw" in a[2:]),
    "enqueue": lambda a: enqueue(int(a[0])),
    "fill": lambda a: fill(int(a[0])),
    "flush": lambda a: flush(a[0]),
}


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in COMMANDS:
        raise SystemExit(__doc__)
    import django

    django.setup()
    print(json.dumps(COMMANDS[argv[0]](argv[1:])), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
