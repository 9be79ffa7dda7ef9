"""Shared by the hostile-tenant tests: tenant b's real Celery round trip, and the checks after an attack.

An attack is refused or harmless only if, afterwards, tenant b's task still goes the whole way (b's web
side enqueues with b's credentials, b's real worker runs it, the result lands in b's own database) and
Redis is the same process it was before (its run_id did not change: it neither crashed nor restarted).
"""
import secrets
import sqlite3
import time
from pathlib import Path

import redis
from tests.app.processes import run, start_worker, tenant_env
from tests.app.tenant_apps import tenant_app, tenant_config


class TenantB:
    """Tenant b's broker side and its real prefork worker, against one test Redis."""

    def __init__(self, server, data_dir: Path, log: Path, node: str):
        self.server = server
        self.env = tenant_env(server, "b", data_dir)
        migrated = run(["-m", "tenantstack.manage", "migrate", "--noinput"], self.env)
        assert migrated.returncode == 0, migrated.stderr
        self.app = tenant_app(tenant_config(server, "b", data_dir))
        self.db = data_dir / "db.sqlite3"
        self.worker = start_worker(self.env, log, node)

    def round_trip(self, timeout: float = 30) -> None:
        """b enqueues an echo task; b's worker must run it and store SUCCESS in b's database."""
        token = secrets.token_hex(8)
        task_id = self.app.send_task("jobs.tasks.echo", args=[token]).id
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with sqlite3.connect(self.db, timeout=5) as db:
                row = db.execute("SELECT status, result FROM django_celery_results_taskresult WHERE task_id = ?",
                                 (task_id,)).fetchone()
            if row and row[0] == "SUCCESS":
                assert token in row[1], row
                return
            time.sleep(0.1)
        raise AssertionError(f"tenant b's task {task_id} did not succeed within {timeout:g} s "
                             f"(worker alive: {self.worker.alive()}):\n{self.worker.output()[-2000:]}")

    def stop(self) -> None:
        self.worker.stop()


def assert_survived(server, b: TenantB, run_id: str) -> None:
    assert server.run_id() == run_id, "Redis restarted or crashed during the attack"
    b.round_trip()


def refused(client, *command) -> str:
    """Send one command; it must fail with a permission (or unknown-command, i.e. disabled) error, the connection
    intact. Returns the server's message."""
    try:
        reply = client.execute_command(*command)
    except redis.exceptions.NoPermissionError as exc:
        message = str(exc)
    except redis.ResponseError as exc:
        message = str(exc)
        assert "unknown command" in message, f"{command[:3]} failed, but not for lack of permission: {message}"
    else:
        raise AssertionError(f"ran {' '.join(map(str, command[:6]))}: {reply!r:.200}")
    assert client.ping()
    return message
