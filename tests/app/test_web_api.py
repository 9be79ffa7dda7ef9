"""The HTTP API through Django's test client, with tenant a's real worker and the real TLS broker."""
import json

import pytest

from tests.app.processes import wait_for


def post_echo(client, body, content_type="application/json"):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post("/api/tasks/echo", data=data, content_type=content_type)


def test_echo_round_trip_through_web_worker_and_result_backend(client, worker_a):
    from tenantstack.healthcheck import worker_node_name

    value = {"text": "héllo", "numbers": [1, 2.5, None], "nested": {"ok": True}}
    response = post_echo(client, {"value": value})
    assert response.status_code == 202, response.content
    task_id = response.json()["id"]

    def finished():
        state = client.get(f"/api/tasks/{task_id}").json()
        return state if state["status"] == "SUCCESS" else None

    state = wait_for(finished, 30, f"task {task_id} to succeed")
    assert state["id"] == task_id
    assert state["result"] == {"value": value, "tenant": "a", "worker": worker_node_name()}
    assert state["date_done"]


def test_a_queued_task_reads_pending_not_unknown(client, worker_a):
    """The PENDING row written at enqueue time tells a queued task from an unknown id."""
    from deployment import naming
    from tenantstack.celery import app
    from tenantstack.healthcheck import worker_node_name

    node, queue = worker_node_name(), naming.queue_name("a")
    app.control.cancel_consumer(queue, destination=[node], reply=True, timeout=5)
    try:
        task_id = post_echo(client, {"value": 1}).json()["id"]
        state = client.get(f"/api/tasks/{task_id}")
        assert state.status_code == 200
        assert state.json() == {"id": task_id, "status": "PENDING", "result": None, "date_done": None}
    finally:
        app.control.add_consumer(queue, destination=[node], reply=True, timeout=5)
    wait_for(lambda: client.get(f"/api/tasks/{task_id}").json()["status"] == "SUCCESS", 30,
             "the queued task to run once the worker consumes again")


def test_unknown_task_id_is_404(client, django_app):
    response = client.get("/api/tasks/9b2f3c1e-0000-4000-8000-000000000000")
    assert response.status_code == 404
    assert response.json() == {"error": "unknown task id"}


@pytest.mark.parametrize("body, fragment", [
    ("this is not json", "not JSON"),
    (b"\xff\xfe\x00", "not JSON"),
    ("[1, 2]", "JSON array, not an object"),
    ('"value"', "JSON string, not an object"),
    ("null", "JSON null, not an object"),
    ('{"valu": 1}', 'no "value"'),
])
def test_malformed_body_is_400_with_one_error(client, django_app, body, fragment):
    from django_celery_results.models import TaskResult

    before = TaskResult.objects.count()
    response = post_echo(client, body)
    assert response.status_code == 400
    payload = response.json()
    assert list(payload) == ["error"] and fragment in payload["error"], payload
    assert TaskResult.objects.count() == before  # nothing was queued


def test_echo_accepts_only_post(client, django_app):
    assert client.get("/api/tasks/echo").status_code in (404, 405)


def test_echo_needs_no_csrf_token(django_app):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    assert post_echo(strict, {"value": "x"}).status_code == 202


def test_healthz_is_200_when_database_and_broker_are_ok(client, django_app):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"tenant": "a", "database": "ok", "broker": "ok"}


def test_admin_renders_and_lists_task_results(client, django_app, worker_a):
    from django.core.management import call_command

    call_command("ensure_admin", verbosity=0)
    login = client.get("/admin/login/")
    assert login.status_code == 200
    hrefs = [part.split('"')[0] for part in login.content.decode().split('href="')[1:]]
    stylesheet = next(href for href in hrefs if href.startswith("/static/"))
    static = client.get(stylesheet)
    assert static.status_code == 200 and b"".join(static.streaming_content)
    assert client.login(username="admin", password=django_app.CONFIG.admin_password)
    task_id = post_echo(client, {"value": "admin"}).json()["id"]
    page = client.get("/admin/django_celery_results/taskresult/")
    assert page.status_code == 200
    assert task_id in page.content.decode()


def test_ensure_admin_resets_a_changed_password(django_app):
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    call_command("ensure_admin", verbosity=0)
    admin = get_user_model().objects.get(username="admin")
    admin.set_password("something-else")
    admin.is_superuser = False
    admin.save()
    call_command("ensure_admin", verbosity=0)
    admin.refresh_from_db()
    assert admin.is_superuser and admin.check_password(django_app.CONFIG.admin_password)
