"""Remote control (pidbox) works within a tenant and cannot reach another tenant's workers.

Tenant a's worker is the session worker `celery@<hostname>`; tenant b gets its own worker here.
"""
import socket

import pytest

from tests.app.processes import run, start_worker, tenant_env, wait_for

B_NODE = f"celery-b@{socket.gethostname()}"


@pytest.fixture(scope="module")
def env_b(local_redis, tmp_path_factory):
    env = tenant_env(local_redis, "b", tmp_path_factory.mktemp("tenant-b-data"))
    migrated = run(["-m", "tenantstack.manage", "migrate", "--noinput"], env)
    assert migrated.returncode == 0, migrated.stderr
    return env


@pytest.fixture(scope="module")
def worker_b(env_b, tmp_path_factory):
    worker = start_worker(env_b, tmp_path_factory.mktemp("logs") / "worker-b.log", B_NODE)
    yield worker
    worker.stop()


@pytest.fixture
def doomed_worker_b(env_b, tmp_path):
    """A tenant b worker of its own, for the test that shuts it down."""
    worker = start_worker(env_b, tmp_path / "worker-b.log", f"doomed-{B_NODE}")
    yield worker
    worker.stop()


@pytest.fixture
def app_b(local_redis, tmp_path):
    from tests.app.tenant_apps import tenant_app, tenant_config

    return tenant_app(tenant_config(local_redis, "b", tmp_path))


def test_each_tenant_sees_only_its_own_workers(worker_a, worker_b, app_b):
    from tenantstack.celery import app as app_a
    from tenantstack.healthcheck import worker_node_name

    seen_by_a = app_a.control.inspect(timeout=2).active_queues() or {}
    seen_by_b = app_b.control.inspect(timeout=2).active_queues() or {}
    assert set(seen_by_a) == {worker_node_name()}
    assert set(seen_by_b) == {B_NODE}
    assert [q["name"] for q in seen_by_a[worker_node_name()]] == ["tenant-a"]
    assert [q["name"] for q in seen_by_b[B_NODE]] == ["tenant-b"]


def test_a_cannot_shut_down_b_but_b_can(worker_a, doomed_worker_b, app_b):
    from tenantstack.celery import app as app_a

    node = f"doomed-{B_NODE}"
    assert app_a.control.ping(destination=[node], timeout=2) == []
    app_a.control.shutdown(destination=[node])
    assert app_b.control.ping(destination=[node], timeout=5), "tenant b's worker no longer answers"
    assert doomed_worker_b.alive()

    app_b.control.shutdown(destination=[node])
    wait_for(lambda: not doomed_worker_b.alive(), 20, "tenant b's worker to shut down")
    assert worker_a.alive()
    from tenantstack.healthcheck import worker_node_name

    assert app_a.control.ping(destination=[worker_node_name()], timeout=5), "tenant a's worker was reached by b"


def test_celery_inspect_ping_cli_reaches_only_its_own_tenant(worker_a, worker_b, env_a, env_b):
    from tenantstack.healthcheck import worker_node_name

    ping = ["-m", "celery", "-A", "tenantstack.celery", "inspect", "ping", "-d", worker_node_name()]
    own = run([*ping, "--timeout", "5"], env_a)
    assert own.returncode == 0 and "pong" in own.stdout, own.stdout + own.stderr
    other = run([*ping, "--timeout", "2"], env_b)
    assert other.returncode != 0 and "pong" not in other.stdout


def test_worker_healthcheck(worker_a, env_a):
    healthy = run(["-m", "tenantstack.healthcheck", "worker"], env_a)
    assert healthy.returncode == 0, healthy.stderr
    missing = run(["-m", "tenantstack.healthcheck", "worker", "--node", "celery@no-such-host"], env_a)
    assert missing.returncode == 1
    assert missing.stderr.startswith("unhealthy: worker celery@no-such-host is not consuming: "), missing.stderr
    assert missing.stderr.count("\n") == 1
