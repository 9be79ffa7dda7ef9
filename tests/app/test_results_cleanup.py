"""Batched deletion of old results: only old rows, nothing on a dry run, bounded memory, short batches."""
import tracemalloc
import uuid
from datetime import timedelta

import pytest

OLD = timedelta(days=30)


def make_results(count: int, age: timedelta, prefix: str) -> list[str]:
    """`count` TaskResult rows last updated `age` ago (date_done is auto_now, so it is set afterwards)."""
    from django.utils import timezone
    from django_celery_results.models import TaskResult

    ids = [f"{prefix}-{uuid.uuid4()}" for _ in range(count)]
    TaskResult.objects.bulk_create([TaskResult(task_id=i, status="SUCCESS", result="null") for i in ids],
                                   batch_size=2000)
    for start in range(0, count, 5000):
        TaskResult.objects.filter(task_id__in=ids[start:start + 5000]).update(date_done=timezone.now() - age)
    return ids


def make_groups(count: int, age: timedelta, prefix: str) -> list[str]:
    from django.utils import timezone
    from django_celery_results.models import GroupResult

    ids = [f"{prefix}-{uuid.uuid4()}" for _ in range(count)]
    GroupResult.objects.bulk_create([GroupResult(group_id=i, result="[]") for i in ids])
    GroupResult.objects.filter(group_id__in=ids).update(date_done=timezone.now() - age)
    return ids


def remaining(prefix: str) -> tuple[int, int]:
    from django_celery_results.models import GroupResult, TaskResult

    return (TaskResult.objects.filter(task_id__startswith=prefix).count(),
            GroupResult.objects.filter(group_id__startswith=prefix).count())


@pytest.fixture
def prefix(django_app):
    """A task/group id prefix of this test's rows; whatever the test leaves is removed afterwards."""
    from django_celery_results.models import GroupResult, TaskResult

    value = f"cleanup-{uuid.uuid4().hex[:8]}"
    yield value
    TaskResult.objects.filter(task_id__startswith=value).delete()
    GroupResult.objects.filter(group_id__startswith=value).delete()


def test_deletes_only_results_older_than_the_cutoff(django_app, prefix):
    from django.utils import timezone

    from tenantstack.cleanup import delete_results_older_than

    make_results(120, OLD, f"{prefix}-old")
    make_results(30, timedelta(days=1), f"{prefix}-new")
    make_groups(7, OLD, f"{prefix}-old")
    make_groups(3, timedelta(hours=1), f"{prefix}-new")

    report = delete_results_older_than(timezone.now() - timedelta(days=7), batch_size=50)

    assert report["task_results"] >= 120 and report["group_results"] >= 7 and report["complete"] is True
    assert remaining(f"{prefix}-old") == (0, 0)
    assert remaining(f"{prefix}-new") == (30, 3)


def test_dry_run_counts_and_deletes_nothing(django_app, prefix):
    from django.utils import timezone

    from tenantstack.cleanup import delete_results_older_than

    make_results(40, OLD, prefix)
    make_groups(4, OLD, prefix)
    report = delete_results_older_than(timezone.now() - timedelta(days=7), dry_run=True)
    assert report["dry_run"] is True and report["task_results"] >= 40 and report["group_results"] >= 4
    assert remaining(prefix) == (40, 4)


def test_each_delete_is_one_short_statement_of_at_most_batch_size_rows(django_app, prefix):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from tenantstack.cleanup import delete_results_older_than

    make_results(1000, OLD, prefix)
    with CaptureQueriesContext(connection) as captured:
        report = delete_results_older_than(timezone.now() - timedelta(days=7), batch_size=100)
    deletes = [q["sql"] for q in captured.captured_queries if q["sql"].startswith("DELETE")]
    assert report["task_results"] >= 1000 and remaining(prefix) == (0, 0)
    assert len(deletes) >= 10, "1000 rows with batch_size=100 must take at least 10 DELETE statements"
    assert all(" IN (" not in sql for sql in deletes), "a batch must not carry its ids as parameters"
    assert all("LIMIT" in q["sql"] for q in captured.captured_queries if q["sql"].startswith("SELECT"))


def test_memory_stays_bounded_however_many_rows_are_deleted(django_app, prefix):
    """Peak Python memory of the batched delete stays far below merely listing every old id."""
    from django.utils import timezone
    from django_celery_results.models import TaskResult

    from tenantstack.cleanup import delete_results_older_than

    make_results(40_000, OLD, prefix)
    cutoff = timezone.now() - timedelta(days=7)

    tracemalloc.start()
    all_ids = list(TaskResult.objects.filter(date_done__lt=cutoff).values_list("pk", flat=True))
    _, listing_peak = tracemalloc.get_traced_memory()
    del all_ids
    tracemalloc.reset_peak()
    baseline, _ = tracemalloc.get_traced_memory()
    report = delete_results_older_than(cutoff, batch_size=1000)
    _, deleting_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    assert report["task_results"] >= 40_000
    assert remaining(prefix) == (0, 0)
    assert deleting_peak - baseline < listing_peak / 5, (deleting_peak - baseline, listing_peak)


def test_time_budget_stops_between_batches_and_the_next_run_finishes(django_app, prefix):
    from django.utils import timezone

    from tenantstack.cleanup import delete_results_older_than

    make_results(300, OLD, prefix)
    cutoff = timezone.now() - timedelta(days=7)
    first = delete_results_older_than(cutoff, batch_size=100, max_seconds=1e-9)
    assert first["complete"] is False and first["task_results"] == 100 and remaining(prefix) == (200, 0)
    second = delete_results_older_than(cutoff, batch_size=100)
    assert second["complete"] is True and remaining(prefix) == (0, 0)


def test_flush_results_command_prints_counts_and_rate(django_app, prefix):
    from io import StringIO

    from django.core.management import call_command

    make_results(25, OLD, prefix)
    out = StringIO()
    call_command("flush_results", "--older-than", "7d", "--dry-run", stdout=out)
    assert out.getvalue().startswith("would delete ") and "rows/s" in out.getvalue()
    assert remaining(prefix) == (25, 0)
    out = StringIO()
    call_command("flush_results", "--older-than", "7d", "--batch-size", "10", stdout=out)
    assert out.getvalue().startswith("deleted ") and "older than 7d" in out.getvalue()
    assert remaining(prefix) == (0, 0)


@pytest.mark.parametrize("argument", ["7", "7x", "-1d", "0d", "seven days"])
def test_flush_results_rejects_a_bad_duration_with_one_line(argument, env_a):
    from tests.app.processes import run

    result = run(["-m", "tenantstack.manage", "flush_results", f"--older-than={argument}"], env_a)
    assert result.returncode == 1
    assert result.stderr.strip() == (f"CommandError: --older-than {argument!r} is not a duration: "
                                     "use a whole number followed by s, m, h, d or w, e.g. 7d")


def test_beat_task_deletes_results_older_than_result_expires(django_app, prefix):
    from tenantstack.celery import app
    from tenantstack.tasks import cleanup_stale_results

    make_results(10, app.conf.result_expires + timedelta(hours=1), f"{prefix}-expired")
    make_results(10, app.conf.result_expires - timedelta(hours=1), f"{prefix}-kept")
    report = cleanup_stale_results.apply().get()
    assert report["complete"] is True
    assert remaining(f"{prefix}-expired") == (0, 0) and remaining(f"{prefix}-kept") == (10, 0)
