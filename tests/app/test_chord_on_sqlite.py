"""A chord over SQLite under 2 worker processes: every part stored, the callback runs once, no
"database is locked" (WAL + IMMEDIATE transactions + busy timeout)."""
from celery import chord, group

PARTS = 60


def test_chord_under_two_worker_processes_completes_without_database_locks(worker_a):
    from django_celery_results.models import TaskResult

    from jobs.tasks import echo

    header = group(echo.s(i) for i in range(PARTS))
    result = chord(header)(echo.s())
    outcome = result.get(timeout=90, interval=0.2)

    assert [part["value"] for part in outcome["value"]] == list(range(PARTS))
    workers = {part["worker"] for part in outcome["value"]}
    assert workers == {worker_a.node}
    parts = TaskResult.objects.filter(task_id__in=[r.id for r in result.parent.results])
    assert parts.count() == PARTS and set(parts.values_list("status", flat=True)) == {"SUCCESS"}
    assert TaskResult.objects.get(task_id=result.id).status == "SUCCESS"
    log = worker_a.output()
    assert "database is locked" not in log and "OperationalError" not in log


def test_groups_in_parallel_all_succeed(worker_a):
    from jobs.tasks import echo

    results = [group(echo.s(f"{g}-{i}") for i in range(20)).apply_async() for g in range(3)]
    for g, result in enumerate(results):
        values = [r["value"] for r in result.get(timeout=90, interval=0.2)]
        assert values == [f"{g}-{i}" for i in range(20)]
    assert "database is locked" not in worker_a.output()
