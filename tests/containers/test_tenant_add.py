"""`./invoke tenant-add c` is all it takes: `./invoke up --tenant c` then runs c's tasks, isolated from a."""

import pytest

import redis
from deployment import naming
from ops.config.envfile import rel
from ops.config.paths import INSTANCE, REDIS_AUTH_CONF
from ops.config.tenants import env_path
from tests.support import deployment as d
from tests.support import tenant_lifecycle

pytestmark = pytest.mark.usefixtures("tenants_up")


@pytest.fixture
def tenant_c():
    yield "c"
    out = tenant_lifecycle.remove("c")
    assert f"removed {naming.redis_user('c')}, {naming.metrics_user('c')} to the running Redis" in out


@pytest.mark.attacks  # c tries a's keys
def test_added_tenant_comes_up_runs_its_tasks_and_is_isolated(tenant_c):
    out = d.invoke("tenant-add", tenant_c).stdout
    assert f"created  {rel(env_path('c'))} (web on 127.0.0.1:{INSTANCE.first_web_port + 2})" in out
    assert "applied ACL user tenant-c, tenant-c-metrics to the running Redis" in out  # its metrics user too
    assert "user tenant-c reset on >" in REDIS_AUTH_CONF.read_text()
    d.invoke("up", "--tenant", tenant_c)
    assert d.http("GET", d.web_url(tenant_c, "/healthz")) == (200, {"tenant": "c", "database": "ok", "broker": "ok"})
    task_id = d.post_echo(tenant_c, "hello c")
    result = d.wait_for_results(tenant_c, [task_id])[task_id]["result"]
    assert result["tenant"] == "c" and result["value"] == "hello c"
    assert result["worker"] == f"celery@{d.hostname(naming.service_name('c', 'worker'))}"
    c = d.tenant_client(tenant_c)
    with pytest.raises(redis.exceptions.NoPermissionError):
        c.get(naming.key_prefix("a") + "anything")
    assert d.task_status("a", task_id)[0] == 404


def test_tenant_add_refuses_bad_and_existing_names():
    for name, message in (("C", "invalid tenant name 'C'"), ("a", "tenant 'a' already exists")):
        proc = d.invoke("tenant-add", name, check=False)
        assert proc.returncode == 2 and proc.stderr.startswith(f"error: {message}"), proc.stderr


@pytest.mark.parametrize("args, message", [
    (["--project", "/nonexistent/shop"], "--project /nonexistent/shop: /nonexistent/shop has no Dockerfile"),
    (["--queues", "shop,reports", "--pools", "default:shop:1"],
     "queue 'reports' of CELERY_QUEUES is consumed by no pool of WORKER_POOLS"),
    (["--pools", "reports:tenant-x:1"], "WORKER_POOLS starts with pool 'reports': the first pool must be `default`"),
    (["--roles", "cache,queue"], "REDIS_ROLES has invalid item 'queue'"),
    (["--celery-app", "config.celery_app"], "TENANT_CELERY_APP='config.celery_app' is not valid"),
])
def test_tenant_add_refuses_bad_declarations_in_one_line_and_writes_nothing(args, message):
    proc = d.invoke("tenant-add", "x", *args, check=False)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and message in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not env_path("x").exists()
