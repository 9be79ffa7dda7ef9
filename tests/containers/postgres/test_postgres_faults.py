"""Faults of a PostgreSQL tenant's database, each with one line naming the fix and nothing lost: a role password
that no longer matches the env file's, and the server stopped under running tenants."""
import subprocess
import time

import pytest

from deployment import naming
from ops.config.paths import INSTANCE
from tests.support import deployment as d
from tests.support import postgres as pg

pytestmark = pytest.mark.usefixtures("postgres_tenants_up")


def _logs_until(container: str, needle: str, timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    while True:
        out = subprocess.run(["docker", "logs", "--tail", "50", container], capture_output=True, text=True)
        text = out.stdout + out.stderr
        if needle in text or time.monotonic() > deadline:
            return text
        time.sleep(1)


def test_a_role_password_changed_behind_ups_back_is_one_line_and_up_puts_it_right():
    task_id = d.post_echo("pgc", "before the drift")
    d.wait_for_results("pgc", [task_id])
    pg.superuser("ALTER ROLE tenant_pgc PASSWORD 'changed-by-hand';")  # the env file still says the old one
    web = INSTANCE.container(naming.service_name("pgc", "web"))
    subprocess.run(["docker", "restart", web], check=True, capture_output=True, timeout=120)
    logs = _logs_until(web, "database error:")
    lines = [ln for ln in logs.splitlines() if "database error:" in ln]
    assert lines and "refused role tenant_pgc's password" in lines[-1] and "./invoke up --tenant pgc" in lines[-1]
    assert "Traceback" not in logs and pg.tenant_password("pgc") not in logs
    out = d.invoke("up", "--tenant", "pgc").stdout  # the stored verifier no longer matches: re-sent
    assert "new password for tenant_pgc" in out
    assert d.wait_for_results("pgc", [task_id])[task_id]["status"] == "SUCCESS"  # nothing lost
    again = d.post_echo("pgc", "after the fix")
    assert d.wait_for_results("pgc", [again])[again]["status"] == "SUCCESS"


def test_server_down_is_reported_by_healthz_and_up_brings_it_back():
    task_id = d.post_echo("pgb", "before the stop")
    d.wait_for_results("pgb", [task_id])
    subprocess.run(["docker", "stop", pg.SERVER], check=True, capture_output=True, timeout=120)
    try:
        code, body = d.http("GET", d.web_url("pgb", "/healthz"), timeout=30)
        assert code == 503 and body["database"].startswith("error: ") and body["broker"] == "ok"
        assert d.http("GET", d.web_url("a", "/healthz"))[0] == 200  # the SQLite tenant does not notice
    finally:
        d.invoke("up", "--tenant", "pgb", "--tenant", "pgc")
    assert d.http("GET", d.web_url("pgb", "/healthz"))[0] == 200
    assert d.wait_for_results("pgb", [task_id])[task_id]["status"] == "SUCCESS"  # its result kept
    after = d.post_echo("pgb", "after the restart")
    assert d.wait_for_results("pgb", [after])[after]["status"] == "SUCCESS"
