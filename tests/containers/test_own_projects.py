"""Bring your own project: two Django + Celery projects written without this deployment in mind run as tenants.

Beside tenant a (the example project), `./invoke tenant-add NAME --project DIR ...` and `./invoke up --tenant NAME`
deploy:
  shop   tests/fixtures/projects/shop, a third party's project (config/ settings, Celery app and WSGI; a custom
         User model without username; settings from plain environment variables; SECURE_SSL_REDIRECT; its own
         Redis cache and results, task routes, beat schedule; celery==5.6.3), with roles cache and results,
         queues shop and reports, a worker pool for each;
  celex  Celery 5.7.0's own examples/django, unmodified (RabbitMQ on localhost in its settings, DEBUG=True, a
         literal SECRET_KEY): the glue's overrides alone make it run, results in its database.
Both answer through their own views and their own tasks (Django's cache API, Celery's result API); afterwards
Redis saw no refusal of theirs, every key of theirs is under their prefix, tenant a still round-trips, the server
never restarted and `docker inspect` of their containers shows none of their secrets.
"""
import json
import re
import time

import pytest

from deployment import naming
from ops.config import tenants
from ops.config.paths import BACKUPS, ROOT
from ops.config.tenants import env_path
from tests.support import deployment as d
from tests.support import projects

pytestmark = [pytest.mark.usefixtures("tenants_up"), pytest.mark.slow]

SHOP, CELEX = "shop", "celex"
NEW = (SHOP, CELEX)
GREETING = "hello-from-the-operators-env-file"  # SHOP_GREETING, an extra line of the tenant's env file
HTTPS = {"X-Forwarded-Proto": "https"}  # what the TLS-terminating proxy in front of shop would send
ORDER_CACHE_SECONDS = 300  # shop's jobs/views.py
SERVICES = {
    SHOP: {*(naming.service_name(SHOP, role) for role in naming.ROLES), *projects.SHOP.pool_services(SHOP).values()},
    CELEX: {*(naming.service_name(CELEX, role) for role in naming.ROLES),
            *projects.CELERY_EXAMPLE.pool_services(CELEX).values()},
}


def _url(tenant: str, path: str) -> str:
    return d.web_url(tenant, path)


def _web(tenant: str) -> str:
    return naming.service_name(tenant, "web")


def _result(task_id: str, timeout: float = 180) -> dict:
    """shop's GET /api/results/<id>?wait=… (AsyncResult.get on its Redis results) until the task is done."""
    deadline = time.monotonic() + timeout
    while True:
        status, _, body = projects.request("GET", _url(SHOP, f"/api/results/{task_id}?wait=20"), headers=HTTPS)
        if status != 202 or time.monotonic() > deadline:
            assert status == 200 and isinstance(body, dict) and body["state"] == "SUCCESS", (task_id, status, body)
            return body["result"]


@pytest.fixture(scope="module")
def deployed(tenants_up, tmp_path_factory):
    """shop and celex added and up beside a; afterwards removed with everything they left (mirrors tenant_c)."""
    run_id = d.client().info("server")["run_id"]
    shop = projects.shop_project()
    assert (shop / "Dockerfile").read_text() == projects.dockerfile_text(), \
        f"copy {projects.TEMPLATE_DOCKERFILE} into {shop}: the fixture builds like any tenant's project"
    celex = projects.celery_django_example(tmp_path_factory.mktemp("celex") / "django")
    try:
        d.invoke("tenant-add", SHOP, *projects.SHOP.tenant_add_args(shop))
        projects.add_env_lines(SHOP, {"SHOP_GREETING": GREETING})
        d.invoke("tenant-add", CELEX, *projects.CELERY_EXAMPLE.tenant_add_args(celex))
        d.invoke("up", "--tenant", SHOP, "--tenant", CELEX, timeout=2400)  # builds both projects' images
        yield {"run_id": run_id, "celex": celex}
    finally:
        added = [t for t in NEW if env_path(t).exists()]
        for tenant in NEW:
            projects.remove_tenant(tenant)
        out = d.invoke("init").stdout  # the one ACL writer drops their users from the auth file and the live Redis
        removed = [line for line in out.splitlines() if "removed" in line]
        for tenant in added:
            assert all(any(user in line for line in removed) for user in projects.tenant_users(tenant)), out


def test_shop_runs_each_queue_on_its_own_pool_with_its_cache_results_and_beat(deployed):
    health = projects.request("GET", _url(SHOP, "/healthz"))  # plain HTTP: answered before the project's redirect
    assert health[0] == 200 and health[2]["tenant"] == SHOP, health
    assert (health[2]["database"], health[2]["broker"]) == ("ok", "ok")
    status, headers, _ = projects.request("GET", _url(SHOP, "/"))
    assert status == 301 and headers["Location"].startswith("https://"), (status, headers)  # its own SSL redirect
    assert projects.request("GET", _url(SHOP, "/"), headers={**HTTPS, "Host": "shop.example.com"})[0] == 400
    status, _, home = projects.request("GET", _url(SHOP, "/"), headers={**HTTPS, "Host": "localhost"})
    assert status == 200 and home["greeting"] == GREETING, (status, home)  # the env file's extra line

    status, _, order = projects.request("POST", _url(SHOP, "/api/orders"), {"item": "tea", "quantity": 3},
                                        headers=HTTPS)
    assert status == 202, (status, order)
    # What the operator sees on Redis: the cached order under shop's prefix, with the view's time-out.
    operator, prefix = d.client(), naming.key_prefix(SHOP)
    order_keys = projects.keys(operator, f"{prefix}*:order:{order['order']}")
    assert len(order_keys) == 1 and 0 < operator.ttl(order_keys[0]) <= ORDER_CACHE_SECONDS, order_keys
    confirmed, report = _result(order["confirm"]), _result(order["report"])
    assert (confirmed["order"], confirmed["confirmed"]) == (order["order"], True), confirmed
    assert projects.host_of(confirmed["worker"]) == projects.pool_host(SHOP, "default"), confirmed  # queue shop
    assert (report["order"], report["report"]) == (order["order"], f"{GREETING}: 3 x tea"), report
    assert projects.host_of(report["worker"]) == projects.pool_host(SHOP, "reports"), report  # routed to reports
    status, _, detail = projects.request("GET", _url(SHOP, f"/api/orders/{order['order']}"), headers=HTTPS)
    assert (status, detail["status"], detail["handled_by"]) == (200, "confirmed", confirmed["worker"])
    cached = projects.request("GET", _url(SHOP, f"/api/cache/order:{order['order']}"), headers=HTTPS)
    assert (cached[0], cached[2]) == (200, {"key": f"order:{order['order']}", "value": {"item": "tea", "quantity": 3}})
    written_by_worker = projects.request("GET", _url(SHOP, f"/api/cache/report:{order['order']}"), headers=HTTPS)
    assert written_by_worker[0] == 200 and written_by_worker[2]["value"] == report["report"]

    deadline, ticks = time.monotonic() + 90, None
    while time.monotonic() < deadline:  # beat sends jobs.tasks.count_tick every 5 s (CELERY_BEAT_SCHEDULE)
        status, _, ticks = projects.request("GET", _url(SHOP, "/api/cache/beat:ticks"), headers=HTTPS)
        if status == 200 and ticks["value"] >= 2:
            break
        time.sleep(2)
    assert ticks and ticks.get("value", 0) >= 2, ticks

    # The same, from the project's own code in a shell: Django's cache API, Celery's result API, the User model.
    shell = projects.shell_json(_web(SHOP), f"""
import os, celery, kombu
from celery.exceptions import QueueNotFound
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from config.celery_app import app
from jobs.tasks import build_report, confirm_order
cache.set("shell:probe", {{"n": 1}}, timeout=120)
report = build_report.delay({order["order"]})
try:
    confirm_order.apply_async(({order["order"]},), queue="nowhere")
    refused = False
except QueueNotFound:
    refused = True
User = get_user_model()
admins = list(User.objects.filter(is_superuser=True, is_staff=True, is_active=True))
result = {{
    "probe": cache.get("shell:probe"),
    "report": report.get(timeout=120),
    "state": app.AsyncResult(report.id).state,
    "id": report.id,
    "refused": refused,
    "user_model": User._meta.label,
    "username_field": User.USERNAME_FIELD,
    "admin": any(u.check_password(os.environ["DJANGO_ADMIN_PASSWORD"]) for u in admins),
    "debug": settings.DEBUG,
    "versions": [celery.__version__, kombu.__version__],
}}
""")
    assert shell["probe"] == {"n": 1} and shell["state"] == "SUCCESS" and shell["refused"], shell
    assert projects.host_of(shell["report"]["worker"]) == projects.pool_host(SHOP, "reports"), shell
    assert (shell["user_model"], shell["username_field"], shell["admin"]) == ("accounts.User", "email", True), shell
    assert shell["debug"] is False and shell["versions"] == ["5.6.3", "5.7.0"], shell  # its Celery, the base's kombu

    # Beat's counter and every result of shop's (Celery's Redis backend) are under its prefix too.
    mine = projects.keys(operator, prefix + "*")
    assert [k for k in mine if k.endswith(":beat:ticks") and operator.ttl(k) > 0], mine
    for task_id in (order["confirm"], order["report"], shell["id"]):
        assert [k for k in mine if k.endswith(f"celery-task-meta-{task_id}")], (task_id, mine)

    migrations = projects.manage(_web(SHOP), "makemigrations", "--check", "--dry-run")
    assert migrations.returncode == 0, migrations.stdout + migrations.stderr  # the glue changed no model
    assert not projects.acl_refusals(operator, [u for t in NEW for u in projects.tenant_users(t)])


def test_celery_example_runs_its_own_tasks_unmodified(deployed):
    settings = (deployed["celex"] / "proj" / "settings.py").read_text()
    assert "CELERY_BROKER_URL = 'amqp://guest:guest@localhost'" in settings  # as shipped: the glue's override runs it
    health = projects.request("GET", _url(CELEX, "/healthz"))
    assert health[0] == 200 and health[2]["tenant"] == CELEX, health
    assert (health[2]["database"], health[2]["broker"]) == ("ok", "ok")

    shell = projects.shell_json(_web(CELEX), """
import celery
from demoapp.models import Widget
from demoapp.tasks import add, count_widgets, mul, rename_widget, xsum
from proj.celery import app
widget = Widget.objects.create(name="first")
calls = {"add": add.delay(2, 3), "mul": mul.delay(4, 5), "xsum": xsum.delay([1, 2, 3]), "count": count_widgets.delay()}
values = {name: call.get(timeout=120) for name, call in calls.items()}
rename_widget.delay(widget.pk, "renamed").get(timeout=120)
result = {
    "values": values,
    "ids": {name: call.id for name, call in calls.items()},
    "states": sorted({app.AsyncResult(call.id).state for call in calls.values()}),
    "renamed": Widget.objects.get(pk=widget.pk).name,
    "backend": type(app.backend).__name__,
    "version": celery.__version__,
}
""")
    assert {k: v for k, v in shell["values"].items() if k != "count"} == {"add": 5, "mul": 20, "xsum": 6}, shell
    assert shell["values"]["count"] >= 1 and shell["renamed"] == "renamed", shell  # the worker shares its database
    assert shell["states"] == ["SUCCESS"] and shell["backend"] == "DatabaseBackend", shell  # django-db results
    assert shell["version"] == projects.CELERY_VERSION, shell
    worker_log = projects.logs(naming.pool_service(CELEX, "default"))
    for name, task_id in shell["ids"].items():
        task = {"count": "count_widgets"}.get(name, name)
        assert f"demoapp.tasks.{task}[{task_id}] succeeded" in worker_log, (name, task_id, worker_log[-2000:])
    for other in (SHOP, "a"):  # no other tenant's worker ever saw them
        assert not [i for i in shell["ids"].values() if i in projects.logs(naming.pool_service(other, "default"))]

    migrations = projects.manage(_web(CELEX), "makemigrations", "--check", "--dry-run")
    assert migrations.returncode == 0, migrations.stdout + migrations.stderr  # e.g. no DEFAULT_AUTO_FIELD imposed
    assert not projects.acl_refusals(d.client(), [u for t in NEW for u in projects.tenant_users(t)])


def test_own_projects_leave_redis_tenant_a_and_their_secrets_as_they_should(deployed):
    operator = d.client()
    assert not projects.acl_refusals(operator, [u for t in NEW for u in projects.tenant_users(t)])
    from ops.config.tenants import known_names

    prefixes = tuple(naming.key_prefix(t) for t in known_names())
    every = projects.keys(operator)
    assert not [k for k in every if not k.startswith(("ops:", *prefixes))]  # every key under some tenant's prefix
    for tenant in NEW:
        assert [k for k in every if k.startswith(naming.key_prefix(tenant))], tenant
    results = [k for k in every if "celery-task-meta-" in k]
    assert results and all(k.startswith(prefixes) for k in results), results
    assert not [k for k in results if k.startswith(naming.key_prefix(CELEX))]  # celex keeps results in its database
    clients = operator.client_list()
    users = {c["user"] for c in clients}
    assert {naming.redis_user(t) for t in NEW} <= users, users
    for tenant in NEW:  # the cap up checks against (deployment/tenant.py connections_needed) covers what they hold
        held = sum(c["user"] == naming.redis_user(tenant) for c in clients)
        assert held <= tenants.declared(tenant).spec.connections_needed(), (tenant, held)

    task_id = d.post_echo("a", "after the own projects")
    echoed = d.wait_for_results("a", [task_id])[task_id]["result"]
    assert echoed["value"] == "after the own projects" and echoed["tenant"] == "a"
    assert echoed["worker"] == f"celery@{d.hostname(naming.service_name('a', 'worker'))}"
    assert operator.info("server")["run_id"] == deployed["run_id"]  # Redis never restarted

    found, expected = projects.tenant_containers(NEW), SERVICES[SHOP] | SERVICES[CELEX]
    services = {c["Config"]["Labels"]["com.docker.compose.service"] for c in found}
    assert services >= expected, expected - services
    needles = [s for t in NEW for s in projects.secret_strings(t)]
    assert len(needles) >= 2 * 4  # per tenant: secret key, admin and Redis passwords, private keys
    leaks = [f"{c['Name']}: a secret of {len(n)} chars" for c in found for n in needles
             if any(n in item for item in projects.shown_by_inspect(c))]
    assert not leaks
    stopped = [c for c in found if c["Config"]["Labels"]["com.docker.compose.service"] in expected
               and not c["State"]["Running"]]
    assert not stopped, json.dumps([(c["Name"], c["State"]) for c in stopped])[:2000]


def test_ops_tasks_work_for_tenants_running_their_own_projects(deployed):
    """backup (export_db through the glue), flush-results and status, for projects that are not the example."""
    out = d.invoke("backup").stdout
    name = re.search(r"verified in [\d.]+s: \S+/(\S+)", out).group(1)
    manifest = json.loads((BACKUPS / name / "manifest.json").read_text())
    assert {SHOP, CELEX} <= set(manifest["tenants"])
    assert {f"tenants/{SHOP}/db.sqlite3", f"tenants/{CELEX}/db.sqlite3"} <= set(manifest["files"])
    flushed = d.invoke("flush-results", "--tenant", SHOP, "--older-than", "7d").stdout
    assert f"tenant {SHOP} keeps task results in Redis: they expire by themselves" in flushed
    doc = json.loads(d.invoke("status", "--json", check=False).stdout)  # exit 1 when some alert would fire
    shop = doc["tenants"][SHOP]
    assert set(shop["queues"]) == {"shop", "reports"} and shop["results_in_redis"] is True, shop
    assert {p["service"] for p in shop["pools"].values()} == {naming.pool_service(SHOP, "default"),
                                                                 naming.pool_service(SHOP, "reports")}, shop["pools"]


# A project's image must run the kombu whose scripts the ACL allows: pinned otherwise at build by the template's
# constraints; and a Dockerfile that skips the template's steps is caught by `up` before the image runs.
OWN_DOCKERFILE = (  # drops the kombu pin from the constraints, installs, and skips tenantstack-finish
    "ARG TS_APP_BASE\nFROM ${TS_APP_BASE}\nARG BUILD_CA_CERTS=\"\"\nUSER 0:0\n"
    "COPY requirements.txt /tmp/project/requirements.txt\n"
    "RUN sed -i '/^kombu==/d' /opt/tenantstack/constraints.txt && tenantstack-install /tmp/project/requirements.txt\n"
    "USER app\nCOPY --chown=app:app . /srv/app/\n")


@pytest.mark.usefixtures("tenants_up")
@pytest.mark.parametrize("dockerfile, requirements, message, detail", [
    (None, "kombu==5.6.2\n", "building its image from", "tenantstack-install: pip could not install"),
    (OWN_DOCKERFILE, "kombu==5.6.2\n",
     "runs kombu 5.6.2 and Celery 5.7.0, whose Lua scripts are not the ones the Redis ACL allows", None),
], ids=["pinned-in-requirements", "installed-by-its-own-dockerfile"])
def test_a_project_with_another_kombu_is_refused_in_one_line(tmp_path, dockerfile, requirements, message, detail):
    """kombu's scripts are in the ACL by SHA-1: a project running another kombu must never reach the server."""
    project = tmp_path / "pinned"
    project.mkdir()
    (project / "Dockerfile").write_text(dockerfile or (ROOT / "app/project-template/Dockerfile").read_text())
    (project / "requirements.txt").write_text(requirements)
    started = time.time()
    try:
        d.invoke("tenant-add", "pinned", "--project", str(project))
        up = d.invoke("up", "--tenant", "pinned", check=False, timeout=1200)
        assert up.returncode == 2, up.stderr[-2000:]
        last = up.stderr.strip().splitlines()[-1]
        assert last.startswith("error: tenant pinned: ") and message in last, last
        assert detail is None or detail in up.stdout + up.stderr  # the build's own line
        assert not projects.tenant_containers(["pinned"])  # nothing of it started
    finally:
        projects.remove_tenant("pinned")
        projects.remove_failed_build_containers(started)
        d.invoke("init")
