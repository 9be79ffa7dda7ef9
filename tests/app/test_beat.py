"""Beat: heartbeat file on every tick, stable schedule across restarts, one beat per tenant, and the
heartbeat task really flows beat -> broker -> worker -> result backend."""
import os
import shelve
import time

import pytest

from tests.app.processes import AppProcess, run, wait_for

ENTRIES = {"heartbeat", "cleanup-stale-results"}


@pytest.fixture
def scheduler_in(django_app):
    """Open tenant a's HeartbeatScheduler on a schedule file in a folder; closes what it opened."""
    from tenantstack.beat import HeartbeatScheduler
    from tenantstack.celery import app

    opened = []

    def open_in(folder):
        scheduler = HeartbeatScheduler(app=app, schedule_filename=str(folder / "celerybeat-schedule"), lazy=False)
        opened.append(scheduler)
        return scheduler

    yield open_in
    for scheduler in opened:
        scheduler.close()


def test_every_tick_touches_the_heartbeat_file(scheduler_in, tmp_path):
    scheduler = scheduler_in(tmp_path)
    heartbeat = tmp_path / "beat.heartbeat"
    assert heartbeat.exists(), "setup must create the heartbeat file"
    os.utime(heartbeat, (time.time() - 3600, time.time() - 3600))
    scheduler.tick()
    assert time.time() - heartbeat.stat().st_mtime < 5


def test_restarting_keeps_exactly_the_configured_entries(scheduler_in, tmp_path):
    first = scheduler_in(tmp_path)
    assert set(first.schedule) == ENTRIES
    first.close()
    with shelve.open(str(tmp_path / "celerybeat-schedule"), writeback=True) as store:
        store["entries"]["entry-removed-from-the-code"] = store["entries"]["heartbeat"]
    for _ in range(3):
        again = scheduler_in(tmp_path)
        assert set(again.schedule) == ENTRIES
        assert "celery.backend_cleanup" not in again.schedule  # replaced by our batched cleanup
        again.close()


def test_a_second_beat_of_the_same_tenant_refuses_to_start(scheduler_in, tmp_path):
    from tenantstack.beat import AnotherBeatRunning

    scheduler_in(tmp_path)
    with pytest.raises(AnotherBeatRunning, match="another beat already runs for this tenant"):
        scheduler_in(tmp_path)


def test_beat_healthcheck_follows_the_heartbeat_age(env_a, tmp_path):
    env = {**env_a, "DATA_DIR": str(tmp_path)}
    never = run(["-m", "tenantstack.healthcheck", "beat"], env)
    assert never.returncode == 1 and "beat has not ticked yet" in never.stderr
    heartbeat = tmp_path / "beat.heartbeat"
    heartbeat.touch()
    assert run(["-m", "tenantstack.healthcheck", "beat"], env).returncode == 0
    os.utime(heartbeat, (time.time() - 120, time.time() - 120))
    stale = run(["-m", "tenantstack.healthcheck", "beat", "--max-age", "60"], env)
    assert stale.returncode == 1 and "beat is stuck" in stale.stderr


def test_real_beat_sends_heartbeats_that_the_worker_records(worker_a, env_a, data_dir_a, tmp_path):
    from django_celery_results.models import TaskResult

    before = set(TaskResult.objects.filter(task_name="tenantstack.heartbeat").values_list("task_id", flat=True))
    beat = AppProcess(["-m", "celery", "-A", "tenantstack.celery", "beat", "--schedule",
                       str(data_dir_a / "celerybeat-schedule"), "--loglevel", "INFO"], env_a, tmp_path / "beat.log")
    try:
        def new_heartbeat():
            rows = TaskResult.objects.filter(task_name="tenantstack.heartbeat", status="SUCCESS")
            return rows.exclude(task_id__in=before).first()

        row = wait_for(new_heartbeat, 40, "a heartbeat result from beat via the worker", interval=0.5)
        assert '"tenant": "a"' in row.result and row.worker == worker_a_node()
        assert time.time() - (data_dir_a / "beat.heartbeat").stat().st_mtime < 15

        second = AppProcess(["-m", "celery", "-A", "tenantstack.celery", "beat", "--schedule",
                             str(data_dir_a / "celerybeat-schedule")], env_a, tmp_path / "beat-2.log")
        wait_for(lambda: not second.alive(), 30, "the second beat to give up")
        assert second.proc.returncode != 0
        assert "another beat already runs for this tenant" in second.output()
        second.stop()
    finally:
        beat.stop()


def worker_a_node() -> str:
    from tenantstack.healthcheck import worker_node_name

    return worker_node_name()
