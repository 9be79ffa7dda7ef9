"""The worker healthcheck reads a liveness file its consumer touches after each broker PING (jobs/liveness.py).

A real prefork worker against the real hardened Redis: healthy once it consumes, unhealthy when its event loop
is stuck (SIGSTOP) and healthy again when it runs on, unhealthy as soon as it stops.
"""
import os
import signal
import uuid

from tests.app.processes import run, start_worker, wait_for


def check(env: dict, node: str, max_age: float | None = None):
    args = ["-m", "tenantstack.healthcheck", "worker", "--node", node]
    return run([*args, "--max-age", str(max_age)] if max_age else args, env)


def test_worker_healthcheck_follows_the_consumer(django_app, env_a, tmp_path):
    node = f"celery@liveness-{uuid.uuid4().hex[:8]}"  # its own file: never worker_a's
    missing = check(env_a, node)
    assert missing.returncode == 1 and "is not consuming" in missing.stderr, missing.stderr

    worker = start_worker(env_a, tmp_path / "worker.log", node)
    try:
        wait_for(lambda: check(env_a, node).returncode == 0, 30, "a healthy worker healthcheck")

        os.kill(worker.proc.pid, signal.SIGSTOP)  # the main process: consumer, event loop and timer
        try:
            stale = wait_for(lambda: (r := check(env_a, node, max_age=3)).returncode == 1 and r, 30,
                             "the healthcheck to see the stopped worker")
            assert "last reached the broker" in stale.stderr, stale.stderr
        finally:
            os.kill(worker.proc.pid, signal.SIGCONT)
        wait_for(lambda: check(env_a, node, max_age=3).returncode == 0, 30, "the worker healthy again")
    finally:
        worker.stop()
    gone = check(env_a, node)
    assert gone.returncode == 1 and "is not consuming" in gone.stderr, gone.stderr
