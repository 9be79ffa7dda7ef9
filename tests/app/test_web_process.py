"""The web role as it runs in the container: gunicorn with gunicorn.conf.py, healthz, its healthcheck."""
import json
import time
import urllib.error
import urllib.request

import pytest

from tests.app.processes import free_port, run, start_gunicorn


def get(url: str, timeout: float = 10) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture(scope="module")
def web_a(django_app, env_a, tmp_path_factory):
    """Gunicorn serving tenant a (database already migrated by django_app)."""
    port = free_port()
    web = start_gunicorn(env_a, tmp_path_factory.mktemp("logs") / "web-a.log", port)
    yield web, f"http://127.0.0.1:{port}"
    web.stop()


@pytest.fixture(scope="module")
def web_without_broker(django_app, env_a, tmp_path_factory):
    """Tenant a's web with REDIS_PORT pointing at a port where nothing listens."""
    port = free_port()
    env = {**env_a, "REDIS_PORT": str(free_port())}
    web = start_gunicorn(env, tmp_path_factory.mktemp("logs") / "web-no-broker.log", port)
    yield web, f"http://127.0.0.1:{port}"
    web.stop()


def test_healthz_200_under_gunicorn(web_a):
    _, url = web_a
    assert get(f"{url}/healthz") == (200, {"tenant": "a", "database": "ok", "broker": "ok"})


def test_healthz_503_names_the_broker_when_it_is_down(web_without_broker):
    _, url = web_without_broker
    started = time.monotonic()
    status, body = get(f"{url}/healthz")
    assert time.monotonic() - started < 10, "the broker check must give up quickly"
    assert status == 503
    assert body["tenant"] == "a" and body["database"] == "ok"
    assert body["broker"].startswith("error: ") and len(body["broker"]) <= 200, body
    assert "Connection refused" in body["broker"] or "connecting" in body["broker"], body


def test_enqueue_is_503_and_leaves_no_pending_row_when_the_broker_is_down(web_without_broker):
    from django_celery_results.models import TaskResult

    _, url = web_without_broker
    pending_before = TaskResult.objects.filter(status="PENDING").count()
    request = urllib.request.Request(f"{url}/api/tasks/echo", data=b'{"value": 1}', method="POST",
                                     headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request, timeout=30)
    assert raised.value.code == 503
    assert "broker unavailable" in json.loads(raised.value.read())["error"]
    assert TaskResult.objects.filter(status="PENDING").count() == pending_before


def test_access_log_never_contains_the_query_string(web_a):
    web, url = web_a
    get(f"{url}/healthz?token=do-not-log-me")
    time.sleep(0.5)
    log = web.output()
    assert '"GET /healthz HTTP/1.1" 200' in log
    assert "do-not-log-me" not in log


def test_web_healthcheck_passes_on_200_and_fails_on_503(web_a, web_without_broker, env_a):
    healthy = run(["-m", "tenantstack.healthcheck", "web", "--url", f"{web_a[1]}/healthz"], env_a)
    assert healthy.returncode == 0, healthy.stderr
    sick = run(["-m", "tenantstack.healthcheck", "web", "--url", f"{web_without_broker[1]}/healthz"], env_a)
    assert sick.returncode == 1
    assert sick.stderr.startswith(f"unhealthy: {web_without_broker[1]}/healthz answered 503")
    assert len(sick.stderr.strip().splitlines()) == 1
