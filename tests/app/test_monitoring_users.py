"""The monitoring profile's Redis users against the real redis.conf and a real worker: all they need, nothing more.

redis_exporter is the monitoring image's own 1.69 (Debian 13's, run on the host from the image's exported
filesystem: tests/support/image_rootfs.py) with the flags compose/monitoring.yaml gives it (read from that file),
as the `exporter` user with its own certificate, against the server image's Valkey 8.1; tenant b's metrics
exporter is app/tenantstack/metrics.py in this process, as `tenant-b-metrics` (also for a tenant b that declares
two queues, on a server of its own whose ACL is rendered from that declaration), while tenant a's real worker (the
session worker) sends its heartbeats and stores its results. After each, Redis' ACL LOG holds no refusal of
them: nothing they send is denied.
"""
import json
import math
import os
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

import redis
from deployment import acl, naming
from ops.config.paths import ROOT
from tests.app.processes import free_port, wait_for
from tests.support import image_rootfs
from tests.support import local_redis as _local_redis


def _refusals(server, user: str) -> list:
    return [e for e in server.client().acl_log() if e.get("username") == user]


def _exporter_argv(server, port: int, password_file: Path) -> list[str]:
    """The exporter's command line as compose/monitoring.yaml has it, pointed at the test server."""
    services = yaml.safe_load((ROOT / "compose" / "monitoring.yaml").read_text())["services"]
    command = services[naming.EXPORTER_SERVICE]["command"]
    crt, key = server.cert(acl.EXPORTER_USER)
    local = {"-redis.addr": f"rediss://127.0.0.1:{server.port}", "-redis.user": acl.EXPORTER_USER,
             "-redis.password-file": str(password_file), "-tls-ca-cert-file": str(server.ca),
             "-tls-client-cert-file": str(crt), "-tls-client-key-file": str(key),
             "-web.listen-address": f"127.0.0.1:{port}"}
    argv = []
    for flag in command:
        name = flag.split("=", 1)[0]
        argv.append(f"{name}={local[name]}" if name in local else flag)
    assert set(local) <= {f.split("=", 1)[0] for f in argv}, "compose/monitoring.yaml's flags changed: update this"
    return [*image_rootfs.argv("monitoring", "prometheus-redis-exporter"), *argv]


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - the test's own local server
        return response.read().decode()


def _value(text: str, series: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


@pytest.fixture
def exporter_redis(tmp_path_factory):
    """A server of its own (real redis.conf, real ACL), whose ACL LOG no other test has written to."""
    server = _local_redis.start(tmp_path_factory.mktemp("redis-exporter"))
    yield server
    server.stop()


def test_redis_exporter_gets_every_metric_it_asks_for_and_nothing_else(exporter_redis, tmp_path):
    local_redis = exporter_redis
    password = acl.monitoring_password(local_redis.redis_env, acl.EXPORTER_USER)
    password_file = tmp_path / "password.json"
    # redis_exporter 1.69 looks the password up under the address with the -redis.user name in it; under the
    # bare address it finds none and never authenticates (what ops/secrets/acl.py must write, for `redis:6380`).
    address = f"rediss://{acl.EXPORTER_USER}@127.0.0.1:{local_redis.port}"
    password_file.write_text(json.dumps({address: password}))
    port = free_port()
    local_redis.client().acl_log_reset()
    log = tmp_path / "exporter.log"
    with open(log, "w") as out:
        # Only PATH, as in its container: redis_exporter reads REDIS_PASSWORD, REDIS_USER, ... from the environment,
        # and the in-process Django fixture puts tenant a's there (the cause of a failure in the full suite).
        proc = subprocess.Popen(_exporter_argv(local_redis, port, password_file), stdout=out, stderr=subprocess.STDOUT,
                                env={"PATH": os.environ["PATH"]})
    last = {}
    try:
        def scraped():
            try:
                last["text"] = _get(f"http://127.0.0.1:{port}/metrics")
            except OSError as exc:
                last["text"] = str(exc)
                return None
            return last["text"] if _value(last["text"], "redis_up") == 1 else None

        try:
            text = wait_for(scraped, 60, "redis_exporter to scrape the test server")
        except AssertionError as exc:
            scrape_errors = [line for line in last.get("text", "").splitlines() if "error" in line][:5]
            raise AssertionError(f"{exc}: {log.read_text()[-2000:]} {scrape_errors}") from None
        _get(f"http://127.0.0.1:{port}/metrics")  # a second scrape: every per-scrape command twice
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    output = log.read_text()
    maxmemory = local_redis.client().info("memory")["maxmemory"]
    assert _value(text, "redis_memory_max_bytes") == maxmemory > 0  # from INFO: no CONFIG needed
    for series in ("redis_memory_used_bytes", "redis_connected_clients", "redis_aof_last_write_status",
                   "redis_rdb_last_bgsave_status", "redis_uptime_in_seconds", "redis_slowlog_length"):
        assert _value(text, series) is not None, series
    # Valkey's INFO server says redis_version:7.2.4 (its Redis compatibility level) beside valkey_version: the
    # exporter's instance label carries what INFO says, parsed like a Redis'.
    version = local_redis.client().info("server")["redis_version"]
    info_line = next((line for line in text.splitlines() if line.startswith("redis_instance_info{")), "")
    assert f'redis_version="{version}"' in info_line, info_line
    assert not _refusals(local_redis, acl.EXPORTER_USER), _refusals(local_redis, acl.EXPORTER_USER)
    assert "NOPERM" not in output, output[-2000:]


@pytest.mark.attacks  # every command below is refused on purpose
def test_the_exporter_user_cannot_read_a_key_run_config_or_write(local_redis):
    password = acl.monitoring_password(local_redis.redis_env, acl.EXPORTER_USER)
    exporter = local_redis.client(acl.EXPORTER_USER, password, cert=acl.EXPORTER_USER)
    assert exporter.info("memory")["maxmemory"] > 0
    local_redis.client().set("tenant-a:exporter-test", "secret")
    config = local_redis.redis_env[acl.RENAMED["CONFIG"]]
    try:
        for command in (("GET", "tenant-a:exporter-test"), ("SET", "tenant-a:x", "1"), ("SCAN", "0"),
                        ("CONFIG", "GET", "maxmemory"), (config, "GET", "requirepass"), ("KEYS", "*"),
                        ("EVAL", "return 1", "0"), ("CLIENT", "LIST"), ("MONITOR",), ("ACL", "LIST"),
                        ("PSUBSCRIBE", "*"), ("DEL", "tenant-a:exporter-test"), ("BGSAVE",)):
            # NOPERM; CONFIG and KEYS are also unknown under their own names (renamed): refused either way.
            with pytest.raises(redis.exceptions.ResponseError, match="no permissions|unknown command"):
                exporter.execute_command(*command)
    finally:
        local_redis.client().delete("tenant-a:exporter-test")


@pytest.fixture
def metrics_b(local_redis, tmp_path, monkeypatch):
    """Tenant b's metrics exporter in this process, as its container runs it (own user, own certificate)."""
    user = naming.metrics_user("b")
    password_file = tmp_path / "redis_password"
    password_file.write_text(acl.monitoring_password(local_redis.redis_env, user))
    crt, key = local_redis.cert(user)
    env = {"TENANT": "b", "DATA_DIR": str(tmp_path), "METRICS_PASSWORD_FILE": str(password_file),
           "REDIS_HOST": local_redis.host, "REDIS_PORT": str(local_redis.port), "TLS_CA_FILE": str(local_redis.ca),
           "TLS_CERT_FILE": str(crt), "TLS_KEY_FILE": str(key)}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    from tenantstack.metrics import Exporter, Source

    exporter = Exporter(Source())
    threading.Thread(target=exporter.heartbeats.run, daemon=True).start()
    local_redis.client().acl_log_reset()
    yield exporter
    local_redis.client().delete(naming.queue_key("b"))


def test_metrics_exporter_counts_the_queue_and_the_oldest_tasks_age(local_redis, metrics_b, tmp_path):
    import tenantstack.published  # noqa: F401 - the header every tenant process adds (tenantstack/celery.py imports it)
    from tests.app.tenant_apps import tenant_app, tenant_config

    app_b = tenant_app(tenant_config(local_redis, "b", tmp_path))
    sent_at = time.time()
    for i in range(5):  # no worker of b runs here: they stay queued
        app_b.send_task("jobs.tasks.echo", args=[i])
    time.sleep(1.1)  # so the oldest one is measurably old
    text = metrics_b.render()
    llen = local_redis.client().llen(naming.queue_key("b"))
    queue = f'tenant="b",queue="{naming.queue_name("b")}"'  # no CELERY_QUEUES: the one queue tenant-b
    assert llen == 5 and _value(text, f"tenantstack_queue_depth{{{queue}}}") == llen
    age = _value(text, f"tenantstack_oldest_queued_task_age_seconds{{{queue}}}")
    assert 1.0 <= age <= time.time() - sent_at + 0.5
    assert _value(text, 'tenantstack_unacked_messages{tenant="b"}') == 0
    assert _value(text, 'tenantstack_metrics_redis_up{tenant="b"}') == 1
    assert _value(text, 'tenantstack_workers_alive{tenant="b"}') == 0  # and a's worker does not count for b
    assert _value(text, 'tenantstack_metrics_database_up{tenant="b"}') == 0  # b has no database in this folder
    assert _value(text, 'tenantstack_results_in_redis{tenant="b"}') == 0
    assert not _refusals(local_redis, naming.metrics_user("b"))


TWO_QUEUES = {"CELERY_QUEUES": "default,reports"}  # b's env file rows: default queue first; one default pool on both


@pytest.fixture
def two_queue_redis(tmp_path_factory):
    """A server of its own whose ACL is rendered from a tenant b that declares two queues (as `init` would)."""
    server = _local_redis.start(tmp_path_factory.mktemp("redis-two-queues"), tenant_settings={"b": TWO_QUEUES})
    yield server
    server.stop()


def test_metrics_exporter_reports_each_queue_of_a_tenant_with_two(two_queue_redis, tmp_path, monkeypatch):
    """Depth and oldest age per declared queue, from one exporter reading as b's metrics user (TENANT_QUEUES as
    Compose passes it); the unacked hash stays one per tenant."""
    import tenantstack.published  # noqa: F401 - the header every tenant process adds
    from tests.app.tenant_apps import tenant_app, tenant_config

    server, user = two_queue_redis, naming.metrics_user("b")
    password_file = tmp_path / "redis_password"
    password_file.write_text(acl.monitoring_password(server.redis_env, user))
    crt, key = server.cert(user)
    for name, value in {"TENANT": "b", "TENANT_QUEUES": TWO_QUEUES["CELERY_QUEUES"], "DATA_DIR": str(tmp_path),
                        "METRICS_PASSWORD_FILE": str(password_file), "REDIS_HOST": server.host,
                        "REDIS_PORT": str(server.port), "TLS_CA_FILE": str(server.ca), "TLS_CERT_FILE": str(crt),
                        "TLS_KEY_FILE": str(key)}.items():
        monkeypatch.setenv(name, value)
    from tenantstack.metrics import Exporter, Source

    exporter = Exporter(Source())
    app_b = tenant_app(tenant_config(server, "b", tmp_path, **TWO_QUEUES))
    server.client().acl_log_reset()
    sent_at = time.time()
    for i in range(2):  # no worker of b runs here: they stay queued
        app_b.send_task("jobs.tasks.echo", args=[i])  # the default queue: the first of CELERY_QUEUES
    time.sleep(1.1)  # so the default queue's oldest is measurably older than reports'
    for i in range(3):
        app_b.send_task("jobs.tasks.echo", args=[i], queue="reports")
    text = exporter.render()
    operator = server.client()
    prefix = naming.key_prefix("b")
    assert (operator.llen(prefix + "default"), operator.llen(prefix + "reports")) == (2, 3)
    assert _value(text, 'tenantstack_unacked_messages{tenant="b"}') == 0  # one hash per tenant, whatever the queue
    assert 'queue="tenant-b"' not in text  # the declared queues only, not the name b would have without them

    # PENDING deployment/acl.py: metrics_rule must give b's metrics user `%R~<prefix><queue>` for EACH declared queue;
    # today it allows only naming.queue_key (tenant-b:tenant-b) and the unacked hash, so LLEN of both declared queues
    # is refused and each reads NaN (unknown, never 0). Until that change lands this test ends here as an expected
    # failure; it passes by itself afterwards.
    rule = next(line for line in operator.acl_list() if line.startswith(f"user {user} ")).split()
    if not all(f"%R~{prefix}{q}" in rule for q in ("default", "reports")):
        assert math.isnan(_value(text, 'tenantstack_queue_depth{tenant="b",queue="reports"}'))
        assert _value(text, 'tenantstack_metrics_redis_up{tenant="b"}') == 0
        pytest.xfail("deployment/acl.py metrics_rule does not yet allow each declared queue's key")
    assert _value(text, 'tenantstack_queue_depth{tenant="b",queue="default"}') == 2
    assert _value(text, 'tenantstack_queue_depth{tenant="b",queue="reports"}') == 3
    default_age = _value(text, 'tenantstack_oldest_queued_task_age_seconds{tenant="b",queue="default"}')
    reports_age = _value(text, 'tenantstack_oldest_queued_task_age_seconds{tenant="b",queue="reports"}')
    assert 1.0 <= default_age <= time.time() - sent_at + 0.5 and 0 <= reports_age < default_age
    assert _value(text, 'tenantstack_metrics_redis_up{tenant="b"}') == 1
    assert not _refusals(server, user), _refusals(server, user)


@pytest.mark.attacks  # every command below is refused on purpose
def test_metrics_user_reads_only_its_tenants_two_keys_and_listens_only_to_its_workers(local_redis):
    user = naming.metrics_user("b")
    metrics = local_redis.client(user, acl.monitoring_password(local_redis.redis_env, user), cert=user)
    assert metrics.llen(naming.queue_key("b")) == 0 and metrics.hlen(naming.unacked_key("b")) == 0
    for command in (("LLEN", naming.queue_key("a")), ("HLEN", naming.unacked_key("a")),
                    ("GET", naming.key_prefix("b") + "x"), ("LPUSH", naming.queue_key("b"), "x"),
                    ("RPOP", naming.queue_key("b")), ("DEL", naming.queue_key("b")), ("INFO",), ("SCAN", "0"),
                    ("PUBLISH", naming.key_prefix("b") + "x", "x"), ("HGETALL", naming.unacked_key("b"))):
        with pytest.raises(redis.exceptions.NoPermissionError):
            metrics.execute_command(*command)
    for pattern in (naming.worker_events_pattern("a"), naming.key_prefix("b") + "*", "*"):
        pubsub = local_redis.client(user, acl.monitoring_password(local_redis.redis_env, user), cert=user).pubsub()
        with pytest.raises(redis.exceptions.NoPermissionError):
            pubsub.psubscribe(pattern)
            pubsub.get_message(timeout=2)


@pytest.mark.usefixtures("worker_a", "django_app")
def test_metrics_exporter_sees_a_real_workers_heartbeats_and_its_finished_tasks(local_redis, data_dir_a, tmp_path,
                                                                               monkeypatch):
    """REDIS_HOST, REDIS_PORT and TLS_CA_FILE are tenant a's, in this process's environment since django_app."""
    user = naming.metrics_user("a")
    password_file = tmp_path / "redis_password"
    password_file.write_text(acl.monitoring_password(local_redis.redis_env, user))
    crt, key = local_redis.cert(user)
    for name, value in {"TENANT": "a", "DATA_DIR": str(data_dir_a), "METRICS_PASSWORD_FILE": str(password_file),
                        "TLS_CERT_FILE": str(crt), "TLS_KEY_FILE": str(key)}.items():
        monkeypatch.setenv(name, value)
    from jobs.tasks import echo  # a shared task: it sends through the current app, the tenant's configured one
    from tenantstack.celery import app  # noqa: F401 - the tenant's app, made current (as its worker imports it)
    from tenantstack.metrics import Exporter, Source

    exporter = Exporter(Source())
    threading.Thread(target=exporter.heartbeats.run, daemon=True).start()
    wait_for(lambda: _value(exporter.render(), 'tenantstack_workers_alive{tenant="a"}') == 1, 20,
             "tenant a's worker heartbeat to reach its metrics exporter")
    done = [echo.delay({"metrics": i}) for i in range(3)]
    for result in done:
        result.get(timeout=60)
    wait_for(lambda: _value(exporter.render(), 'tenantstack_tasks_finished_total{tenant="a",state="succeeded"}') == 3,
             20, "three succeeded tasks to be counted from the result database")
    text = exporter.render()
    assert _value(text, 'tenantstack_task_runtime_seconds_count{tenant="a"}') == 3
    assert _value(text, 'tenantstack_result_rows{tenant="a"}') >= 3
    assert _value(text, 'tenantstack_database_bytes{tenant="a"}') > 0
    assert _value(text, 'tenantstack_tasks_finished_total{tenant="a",state="failed"}') == 0
    again = exporter.render()  # the watermark: nothing is counted twice
    assert _value(again, 'tenantstack_tasks_finished_total{tenant="a",state="succeeded"}') == 3
    assert not _refusals(local_redis, user)
