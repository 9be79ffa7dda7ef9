"""The monitoring profile on the real deployment: every target scraped, a backlog seen, alerted and drained.

One `./invoke up --monitoring --tenant a --tenant b` for the module, on the test instance, whose own
envs/monitoring.env shortens the rhythm (2 s scrapes and evaluations, `for:` 10 s, 1 s group wait): the
shipped defaults stay as they are (tests/test_monitoring_rules.py tests those). With tenant b's worker
stopped, 600 tasks posted through b's web API sit in its queue: Prometheus' queue depth equals LLEN, the
TenantQueueBacklog alert for tenant="b" fires and reaches Alertmanager and the receiver's log, `./invoke
status` shows the same backlog, and a real Chromium (Debian's, through Playwright) draws it in Prometheus'
classic graph page (Debian 13's Prometheus 2.53 has no React UI: /classic/graph). b's worker then drains it.
At the end the profile is taken down again (its data volumes kept), so the instance is left as the module
found it. A compromised tenant container reaches none of it.
"""
import json
import re
import subprocess
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

import redis
from deployment import acl, envs, naming
from deployment.instance import UIDS
from ops.config.envfile import read_env
from ops.config.paths import ARTIFACTS, INSTANCE, ROOT
from ops.core.run import wait_until
from tests.containers.test_tenant_networks import _ip, _networks, _probe
from tests.support import browser
from tests.support import deployment as d

BACKLOG = 600
# The test instance's rhythm: fast enough to see an alert fire within seconds (never the shipped defaults).
FAST = {"PROMETHEUS_SCRAPE_SECONDS": "2", "PROMETHEUS_EVALUATION_SECONDS": "2", "ALERT_FOR_SECONDS": "10",
        "ALERTMANAGER_GROUP_WAIT_SECONDS": "1"}
SCREENSHOT = ARTIFACTS / "prometheus-queue-depth.png"
QUEUE_DEPTH_B = 'tenantstack_queue_depth{tenant="b"}'
# Debian's Prometheus 2.53 carries only the classic UI, under /classic/ (its /graph is a page saying so).
CLASSIC_GRAPH = "/classic/graph"


@pytest.fixture(scope="module")
def monitoring():
    """The profile up and healthy with the fast rhythm; taken down again at the end of the module. Yields what
    `up` printed."""
    d.invoke("init")  # writes envs/monitoring.env if this instance has none yet
    path = INSTANCE.monitoring_env
    values = {**read_env(path), **FAST}
    path.write_text(envs.render(envs.MONITORING_SETTINGS, values, envs.MONITORING_HEADER))
    out = d.invoke("up", "--monitoring", "--tenant", "a", "--tenant", "b", timeout=1200).stdout
    yield out
    d.invoke("down", "--monitoring")


def _api(port: int, path: str, timeout: float = 10):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as response:  # noqa: S310
        return json.loads(response.read())


def prometheus(path: str):
    return _api(INSTANCE.prometheus_port, path)


def query(expr: str) -> dict[str, float]:
    """An instant query: the tenant (or job) label of each series -> its value."""
    result = prometheus("/api/v1/query?query=" + urllib.parse.quote(expr))["data"]["result"]
    return {r["metric"].get("tenant") or r["metric"].get("job", ""): float(r["value"][1]) for r in result}


def _waited(pending, timeout: float, what: str) -> None:
    wait_until(pending, timeout=timeout, what=what, interval=1)


def test_up_prints_the_prometheus_url_that_opens_its_graph_page(monitoring):
    printed = re.search(r"Prometheus: (http://\S+?),? ", monitoring)
    assert printed, monitoring[-2000:]
    url = printed.group(1)
    assert url.startswith(f"http://127.0.0.1:{INSTANCE.prometheus_port}/"), url
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - the instance's own local Prometheus
        landed, page = response.geturl(), response.read().decode()
    # Followed to the classic graph page (the one the screenshot below shows), not Debian's "no UI" notice.
    assert urllib.parse.urlsplit(landed).path == CLASSIC_GRAPH and "graph_template" in page, (url, landed, page[:500])


def test_every_scrape_target_is_up(monitoring):
    wanted = {"prometheus", "alertmanager", "redis", "ops", "tenants"}

    def pending():
        targets = prometheus("/api/v1/targets")["data"]["activeTargets"]
        down = [f"{t['labels']['job']} {t['scrapeUrl']}: {t['health']} {t.get('lastError', '')}" for t in targets
                if t["health"] != "up"]
        jobs = {t["labels"]["job"] for t in targets}
        tenants = {t["labels"].get("tenant") for t in targets if t["labels"]["job"] == "tenants"}
        if down or jobs != wanted or tenants != {"a", "b"}:
            return f"targets up ({'; '.join(down) or sorted(jobs)})"
        return None

    _waited(pending, 120, "every scrape target up")
    up = prometheus("/api/v1/query?query=up")["data"]["result"]
    assert len(up) == 6 and all(r["value"][1] == "1" for r in up), up
    assert query("redis_up") == {"redis": 1.0}
    _waited(lambda: None if query("tenantstack_workers_alive") == {"a": 1.0, "b": 1.0} else
            f"both tenants' workers alive (now {query('tenantstack_workers_alive')})", 60, "worker heartbeats")
    # What only ops knows, through the receiver: every certificate's expiry, the backup time (0: none yet).
    certs = prometheus("/api/v1/query?query=tenantstack_certificate_expiry_timestamp_seconds")["data"]["result"]
    names = {r["metric"]["certificate"] for r in certs}
    assert {"ca", "redis", "client", "commander", acl.EXPORTER_USER, "tenant-a", "tenant-a-metrics",
            "tenant-b-metrics"} <= names
    assert "ops" in query("tenantstack_backup_last_verified_timestamp_seconds")


def _post_backlog(n: int) -> None:
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda i: d.post_echo("b", {"backlog": i}), range(n)))
    assert len(set(ids)) == n


def _receiver_log() -> list[dict]:
    out = subprocess.run(["docker", "exec", d.container(naming.RECEIVER_SERVICE), "cat",
                          "/var/log/alerts/alerts.jsonl"], capture_output=True, text=True, timeout=60)
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def _screenshot_graph() -> None:
    from playwright.sync_api import expect

    url = (f"http://127.0.0.1:{INSTANCE.prometheus_port}{CLASSIC_GRAPH}?g0.expr={urllib.parse.quote(QUEUE_DEPTH_B)}"
           "&g0.tab=0&g0.range_input=5m")
    SCREENSHOT.parent.mkdir(exist_ok=True)

    def scenario(page):
        page.goto(url)
        expect(page.locator(".graph_area svg path").first).to_be_visible(timeout=30_000)
        expect(page.locator(".legend")).to_contain_text('tenant="b"', timeout=30_000)
        page.screenshot(path=str(SCREENSHOT))

    browser.drive(scenario)
    assert SCREENSHOT.stat().st_size > 10_000


def test_a_backlog_is_measured_alerted_shown_by_status_and_drained(monitoring):
    worker_b = naming.service_name("b", "worker")
    operator = d.client()
    d.compose_run("stop", worker_b)
    try:
        _post_backlog(BACKLOG)

        # Prometheus' queue depth equals LLEN (b's beat adds a heartbeat task every 10 s: compare the same moment).
        def differs():
            llen, seen = operator.llen(naming.queue_key("b")), query(QUEUE_DEPTH_B).get("b")
            return None if seen == llen >= BACKLOG else f"Prometheus {seen} = LLEN {llen}"
        _waited(differs, 60, "queue depth in Prometheus")

        def not_firing():
            alerts = prometheus("/api/v1/alerts")["data"]["alerts"]
            states = {a["state"] for a in alerts
                      if a["labels"]["alertname"] == "TenantQueueBacklog" and a["labels"].get("tenant") == "b"}
            return None if "firing" in states else f"TenantQueueBacklog for b firing (now {states or 'none'})"
        _waited(not_firing, 90, "the backlog alert")

        def not_in_alertmanager():
            alerts = _api(INSTANCE.alertmanager_port, "/api/v2/alerts?filter=" +
                          urllib.parse.quote('alertname="TenantQueueBacklog"'))
            found = [a for a in alerts if a["labels"].get("tenant") == "b" and a["status"]["state"] == "active"]
            return None if found else "TenantQueueBacklog for b active in Alertmanager"
        _waited(not_in_alertmanager, 60, "Alertmanager")

        def not_logged():
            for entry in _receiver_log():
                for alert in entry["notification"].get("alerts", []):
                    labels = alert["labels"]
                    if labels.get("alertname") == "TenantQueueBacklog" and labels.get("tenant") == "b":
                        assert alert["annotations"]["summary"].startswith("Tenant b has")
                        return None
            return "TenantQueueBacklog for b in the receiver's log"
        _waited(not_logged, 60, "the webhook receiver")

        # ./invoke status needs no Prometheus: the same backlog, read from Redis; it exits 1 (an alert would fire).
        shown = d.invoke("status", "--json", check=False)
        assert shown.returncode == 1, shown.stderr[-2000:]
        doc = json.loads(shown.stdout)
        assert doc["tenants"]["b"]["queue_depth"] >= BACKLOG and doc["tenants"]["b"]["workers"] == 0
        a_alerts = set(doc["tenants"]["a"]["alerts"])  # earlier tests' failed tasks may count against a: not these
        assert doc["tenants"]["a"]["workers"] == 1 and not a_alerts & {"TenantQueueBacklog", "TenantWorkerDown"}
        assert f"TenantQueueBacklog{{tenant=b,queue={naming.queue_name('b')}}}" in doc["alerts"]
        assert doc["redis"]["up"] is True
        assert doc["tenants"]["b"]["oldest_queued_age_seconds"] > 0
        screen = d.invoke("status", check=False).stdout  # no terminal: `!` marks what would alert
        row = next(line for line in screen.splitlines() if line.startswith("b "))
        assert "!" in row, screen

        _screenshot_graph()
    finally:
        d.compose_run("start", worker_b)

    _waited(lambda: None if operator.llen(naming.queue_key("b")) < 5 else
            f"b's queue drained (LLEN {operator.llen(naming.queue_key('b'))})", 300, "b's backlog")
    _waited(lambda: None if query(QUEUE_DEPTH_B).get("b", BACKLOG) < 5 and
            query("tenantstack_workers_alive").get("b") == 1 else "Prometheus sees b drained", 60, "drain")
    # Counted from b's result database as they finished (beat's expired heartbeats among them are not).
    succeeded = 'tenantstack_tasks_finished_total{state="succeeded",tenant="b"}'
    _waited(lambda: None if query(succeeded).get("b", 0) >= BACKLOG else
            f"{BACKLOG} succeeded tasks of b counted (now {query(succeeded).get('b')})", 60, "task counters")


def test_the_readme_screenshot_is_committed():
    """README.md shows a copy of the screenshot the test above takes (test-artifacts/ is not committed)."""
    committed = ROOT / "docs" / "prometheus-queue-depth.png"
    assert committed.exists() and committed.stat().st_size > 10_000


MONITORING_TARGETS = [(naming.PROMETHEUS_SERVICE, naming.PROMETHEUS_CONTAINER_PORT),
                      (naming.ALERTMANAGER_SERVICE, naming.ALERTMANAGER_CONTAINER_PORT),
                      (naming.EXPORTER_SERVICE, naming.EXPORTER_CONTAINER_PORT),
                      (naming.RECEIVER_SERVICE, naming.RECEIVER_CONTAINER_PORT),
                      (naming.metrics_service("a"), naming.TENANT_METRICS_CONTAINER_PORT),
                      (naming.metrics_service("b"), naming.TENANT_METRICS_CONTAINER_PORT)]


def test_monitoring_sits_on_its_own_network_with_redis(monitoring):
    net = INSTANCE.network(naming.MONITORING_NETWORK)
    for service, _ in MONITORING_TARGETS:
        assert set(_networks(service)) == {net}, service
    assert net in _networks(naming.REDIS_SERVICE)
    for t in ("a", "b"):
        for role in naming.ROLES:
            assert net not in _networks(naming.service_name(t, role))


@pytest.mark.parametrize("role", ["web", "worker"])
def test_tenant_a_cannot_open_tcp_to_any_monitoring_service(monitoring, role):
    attacker = naming.service_name("a", role)
    assert _probe(attacker, naming.REDIS_SERVICE, naming.REDIS_TLS_PORT) == "connected"  # the probe works
    targets = [(host, port) for service, port in MONITORING_TARGETS
               for host in (service, _ip(service, naming.MONITORING_NETWORK))]
    reached = {f"{h}:{p}": r for h, p in targets if (r := _probe(attacker, h, p)) == "connected"}
    assert not reached, f"{attacker} reached {reached}"


@pytest.mark.attacks  # every command below is refused on purpose
def test_the_exporter_user_on_the_real_redis_cannot_read_keys_run_config_or_write(monitoring):
    env = d.redis_env()
    exporter = d.client(acl.EXPORTER_USER, acl.monitoring_password(env, acl.EXPORTER_USER), cert=acl.EXPORTER_USER)
    assert exporter.info("memory")["maxmemory"] > 0
    key = naming.queue_key("a")
    for command in (("GET", key), ("LRANGE", key, "0", "-1"), ("SET", key, "x"), ("DEL", key), ("SCAN", "0"),
                    (env[acl.RENAMED["CONFIG"]], "GET", "*"), ("CONFIG", "GET", "*"), ("FLUSHALL",), ("BGSAVE",),
                    ("ACL", "LIST"), ("CLIENT", "KILL", "USER", naming.redis_user("a"))):
        with pytest.raises(redis.exceptions.ResponseError):  # NoPermissionError, or unknown for renamed ones
            exporter.execute_command(*command)


def test_monitoring_secrets_are_files_for_their_user_only_never_environment(monitoring):
    from tests.containers.test_secrets_stay_out import _secret_strings

    needles = _secret_strings()
    for service, _ in MONITORING_TARGETS:
        info = d.inspect(d.container(service))
        config = info["Config"]
        shown = json.dumps([config.get("Env"), info.get("Args"), config.get("Cmd"), config.get("Entrypoint"),
                            config.get("Labels")])
        assert not [n for n in needles if n in shown], service
        assert info["HostConfig"]["ReadonlyRootfs"] is True and info["HostConfig"]["CapDrop"], service
        assert info["HostConfig"]["Memory"] > 0 and info["HostConfig"]["PidsLimit"] > 0, service
        for binding in (info["HostConfig"]["PortBindings"] or {}).values():  # an EXPOSEd, unpublished port: None
            assert [b["HostIp"] for b in binding or []] in ([], ["127.0.0.1"]), service
    exporter_file = INSTANCE.monitoring_secrets / acl.EXPORTER_USER / "password.json"
    st = exporter_file.stat()
    assert (st.st_uid, st.st_mode & 0o777) == (UIDS["monitoring"], 0o400)
    assert d.inspect(d.container(naming.EXPORTER_SERVICE))["Config"]["User"] == str(UIDS["monitoring"])


def test_metrics_exporter_cannot_write_the_tenants_volume(monitoring):
    write = subprocess.run(["docker", "exec", d.container(naming.metrics_service("a")), "sh", "-c",
                            "echo x > /data/db.sqlite3"], capture_output=True, text=True, timeout=60)
    assert write.returncode != 0 and "Read-only file system" in write.stderr
    listing = subprocess.run(["docker", "exec", d.container(naming.metrics_service("a")), "ls", naming.APP_SECRETS_DIR],
                             capture_output=True, text=True, timeout=60)
    assert listing.stdout.strip() == ""  # none of the tenant's own secret files


def test_down_monitoring_stops_the_profile_only(monitoring):
    """Last in the module: the profile goes, the tenants stay, and a later bare `up` does not bring it back."""
    from ops.deploy import containers, wanted

    d.invoke("down", "--monitoring")
    left = [s for s, _ in MONITORING_TARGETS if containers.is_running(s)]
    assert not left, left
    assert d.http("GET", d.web_url("a", "/healthz"))[0] == 200
    assert wanted.load()["monitoring"] is False and {"a", "b"} <= set(wanted.load()["tenants"])
