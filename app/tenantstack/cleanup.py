"""Delete old task and group results in short batches.

django-celery-results' own `delete_expired` runs ONE `DELETE ... WHERE date_done < cutoff` in one
transaction: on a large table that holds the write lock for as long as it takes (SQLite: every
worker waits; PostgreSQL: a huge transaction and WAL burst). Here each batch is one short
transaction that deletes at most `batch_size` rows by primary-key range, and nothing but the
current batch boundary is ever held in memory.
"""
import time
from datetime import datetime

from django.db import transaction
from django_celery_results.models import GroupResult, TaskResult

DEFAULT_BATCH_SIZE = 5000


def delete_results_older_than(cutoff: datetime, *, batch_size: int = DEFAULT_BATCH_SIZE, dry_run: bool = False,
                              max_seconds: float | None = None) -> dict:
    """Delete TaskResult and GroupResult rows whose date_done is before `cutoff`.

    dry_run counts instead of deleting. max_seconds stops between batches once exceeded (the next
    run continues where this one stopped); `complete` tells whether everything old is gone.
    Returns {"task_results": n, "group_results": n, "seconds": s, "dry_run": b, "complete": b}.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    started = time.monotonic()
    deadline = started + max_seconds if max_seconds else None
    report = {"task_results": 0, "group_results": 0, "dry_run": dry_run, "complete": True}
    for key, model in (("task_results", TaskResult), ("group_results", GroupResult)):
        old = model._default_manager.filter(date_done__lt=cutoff)
        if dry_run:
            report[key] = old.count()
            continue
        deleted, complete = _delete_in_batches(old, batch_size, deadline)
        report[key] = deleted
        if not complete:
            report["complete"] = False
            break
    report["seconds"] = round(time.monotonic() - started, 3)
    return report


def _delete_in_batches(old, batch_size: int, deadline: float | None) -> tuple[int, bool]:
    """Delete the rows of queryset `old` batch by batch in primary-key order; (rows deleted, finished)."""
    old = old.order_by("pk")
    deleted = 0
    after = None  # every old row with pk <= after is gone
    while True:
        remaining = old if after is None else old.filter(pk__gt=after)
        # The pk of the batch_size-th remaining old row: one value, however large the table.
        upper = remaining.values_list("pk", flat=True)[batch_size - 1:batch_size].first()
        batch = remaining if upper is None else remaining.filter(pk__lte=upper)
        with transaction.atomic(using=old.db):
            # One DELETE ... WHERE over the pk range. QuerySet.delete() would first SELECT the rows to
            # collect cascades and signals (results have neither), then delete them in chunks of 999 ids.
            count = batch._raw_delete(batch.db)
        deleted += count
        if upper is None:
            return deleted, True
        after = upper
        if deadline is not None and time.monotonic() > deadline:
            return deleted, False
