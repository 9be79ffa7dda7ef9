"""Tenant stacks: tasks run on their own tenant's worker only, nothing crosses tenants, nothing is lost."""
import re
import socket
import subprocess
import time

import pytest

import redis
from deployment import naming
from ops.config.envfile import rel
from ops.config.tenants import env_path, web_port_of
from ops.deploy import compose
from tests.support import deployment as d

pytestmark = pytest.mark.usefixtures("tenants_up")


def _exec(service: str, *argv: str, check=True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["docker", "exec", d.container(service), *argv], capture_output=True, text=True, timeout=120)
    if check:
        assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def test_healthz_reports_tenant_database_and_broker():
    for t in ("a", "b"):
        assert d.http("GET", d.web_url(t, "/healthz")) == (200, {"tenant": t, "database": "ok", "broker": "ok"})


def test_web_is_published_on_loopback_only():
    for t, port in (("a", web_port_of("a")), ("b", web_port_of("b"))):
        bindings = d.inspect(d.container(naming.service_name(t, "web")))["HostConfig"]["PortBindings"]
        assert bindings == {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}


@pytest.mark.parametrize("tenant,other", [("a", "b"), ("b", "a")])
def test_task_posted_to_a_tenant_runs_on_its_own_worker_only(tenant, other):
    ids = [d.post_echo(tenant, {"n": i, "from": tenant}) for i in range(20)]
    results = d.wait_for_results(tenant, ids)
    own_worker = f"celery@{d.hostname(naming.service_name(tenant, 'worker'))}"
    for task_id, body in results.items():
        assert body["result"]["tenant"] == tenant and body["result"]["worker"] == own_worker
        assert body["date_done"]
        assert d.task_status(other, task_id)[0] == 404  # the other tenant's database never saw it
    other_log = subprocess.run(["docker", "logs", d.container(naming.service_name(other, "worker"))],
                               capture_output=True, text=True).stdout
    other_log += subprocess.run(["docker", "logs", d.container(naming.service_name(other, "worker"))],
                                capture_output=True, text=True).stderr
    assert not [i for i in ids if i in other_log]


def test_api_rejects_malformed_bodies_and_unknown_ids():
    url = d.web_url("a", "/api/tasks/echo")
    for body in (b"not json", b"[1, 2]", b'{"other": 1}'):
        code, reply = d.http("POST", url, body)
        assert code == 400 and reply["error"]
    assert d.task_status("a", "00000000-0000-0000-0000-000000000000") == (404, {"error": "unknown task id"})


def test_admin_lists_task_results():
    import urllib.request

    with urllib.request.urlopen(d.web_url("a", "/admin/login/"), timeout=10) as resp:
        assert resp.status == 200 and b"Django" in resp.read()


@pytest.mark.attacks
def test_tenant_a_broker_credentials_cannot_read_b_queue_or_keys():
    a = d.tenant_client("a")
    b_queue = naming.key_prefix("b") + naming.queue_name("b")
    for call in (lambda: a.llen(b_queue), lambda: a.lrange(b_queue, 0, -1), lambda: a.rpop(b_queue),
                 lambda: a.smembers(naming.key_prefix("b") + "_kombu.binding." + naming.queue_name("b")),
                 lambda: a.hgetall(naming.key_prefix("b") + "unacked")):
        with pytest.raises(redis.exceptions.NoPermissionError):
            call()


def test_control_from_tenant_a_does_not_reach_tenant_b_workers():
    b_worker = naming.service_name("b", "worker")
    b_node = f"celery@{d.hostname(b_worker)}"
    a_node = f"celery@{d.hostname(naming.service_name('a', 'worker'))}"
    started = d.inspect(d.container(b_worker))["State"]["StartedAt"]
    web_a = naming.service_name("a", "web")
    ping = _exec(web_a, "celery", "-A", "tenantstack.celery", "inspect", "ping", "--json", "--timeout", "5").stdout
    assert set(re.findall(r"celery@[\w.-]+", ping)) == {a_node}, ping
    shutdown = _exec(web_a, "celery", "-A", "tenantstack.celery", "control", "shutdown", "--destination", b_node,
                     "--timeout", "3", check=False)
    revoke = _exec(web_a, "celery", "-A", "tenantstack.celery", "control", "revoke",
                   "00000000-0000-0000-0000-00000000000b",
                   "--timeout", "3", check=False)
    time.sleep(3)
    assert b_node not in shutdown.stdout and b_node not in revoke.stdout
    state = d.inspect(d.container(b_worker))["State"]
    assert state["Running"] and state["StartedAt"] == started
    revoked_b = _exec(naming.service_name("b", "web"), "celery", "-A", "tenantstack.celery", "inspect", "revoked",
                      "--timeout", "5").stdout
    assert "00000000-0000-0000-0000-00000000000b" not in revoked_b


def test_every_key_and_channel_carries_its_tenant_prefix():
    d.post_echo("a", "prefix-check")
    d.post_echo("b", "prefix-check")
    c = d.client()
    keys = [k.decode() for k in c.scan_iter(count=1000)]
    from ops.config.tenants import known_names

    allowed = tuple(naming.key_prefix(t) for t in known_names())
    tenant_keys = [k for k in keys if not k.startswith("ops:")]
    strays = [k for k in tenant_keys if not k.startswith(allowed)]
    assert tenant_keys and not strays, strays
    assert any(k.startswith(naming.key_prefix("a") + "_kombu.binding.") for k in keys)
    channels = [ch.decode() for ch in c.pubsub_channels()]
    assert all(ch.startswith(allowed) for ch in channels), channels
    clients = c.client_list()
    tenant_clients = [cl for cl in clients if cl["user"].startswith("tenant-")]
    assert tenant_clients and {cl["user"] for cl in tenant_clients} == {"tenant-a", "tenant-b"}


def test_beat_heartbeat_runs_once_per_interval_after_a_restart():
    beat = naming.service_name("a", "beat")
    compose.run("restart", beat, profiles=compose.all_profiles(), quiet=True)
    d.invoke("up", "--tenant", "a")
    time.sleep(25)
    log = subprocess.run(["docker", "logs", "--since", "20s", d.container(beat)], capture_output=True, text=True)
    sent = re.findall(r"Sending due task heartbeat", log.stdout + log.stderr)
    assert 1 <= len(sent) <= 3, (len(sent), log.stderr[-2000:])  # every 10 s, not doubled
    worker_log = subprocess.run(["docker", "logs", "--since", "20s", d.container(naming.service_name("a", "worker"))],
                                capture_output=True, text=True)
    assert "heartbeat tenant=a" in worker_log.stdout + worker_log.stderr


def test_unknown_tenant_is_one_line_listing_known_tenants():
    proc = d.invoke("up", "--tenant", "zz", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: unknown tenant 'zz': known tenants are a, b")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_missing_env_value_is_one_line_naming_variable_and_file():
    path = env_path("b")
    original = path.read_text()
    try:
        path.write_text("\n".join(line for line in original.splitlines() if not line.startswith("REDIS_PASSWORD="))
                        + "\n")
        proc = d.invoke("up", "--tenant", "b", check=False)
        assert proc.returncode == 2
        assert proc.stderr.strip().splitlines() == [
            f"error: {rel(path)}: missing REDIS_PASSWORD: run `./invoke init` to generate real values"]
    finally:
        path.write_text(original)


def test_port_clash_is_one_line_naming_the_port_and_setting():
    web_b = naming.service_name("b", "web")
    compose.run("stop", web_b, profiles=compose.all_profiles(), quiet=True)
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        squatter.bind(("127.0.0.1", web_port_of("b")))
        squatter.listen()
        proc = d.invoke("up", "--tenant", "b", check=False)
        assert proc.returncode == 2
        assert proc.stderr.strip() == (f"error: port {web_port_of('b')} (WEB_PORT in {rel(env_path('b'))}) is in use "
                                       "by another process: stop it or set WEB_PORT to a free port")
    finally:
        squatter.close()
        d.invoke("up", "--tenant", "b")
