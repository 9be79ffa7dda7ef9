"""The alert rules as they ship: `promtool test rules` fires every alert on a series that crosses its threshold,
and none of them on a healthy deployment; the queue alerts fire per queue of a tenant with two; the rendered
Prometheus and Alertmanager configurations load.

Rendered from the committed templates with the table's defaults (envs/monitoring.env as `init` writes it).
Annotations are left out of the unit test (promtool compares them verbatim); that each rule has a summary
that says what to run is checked on its own. promtool and amtool are the monitoring image's own (Prometheus 2.53,
Alertmanager 0.28), run on the host from its exported filesystem (tests/support/image_rootfs.py): the very
build that loads these files in the containers.
"""
import re
import subprocess

import pytest
import yaml

from deployment import envs
from ops.monitor import config
from tests.support import image_rootfs

DEFAULTS = {s.name: int(s.default) for s in envs.MONITORING_SETTINGS}
BACKUP_ALERT = envs.backup_alert_seconds(24 * 3600)  # BACKUP_EVERY's default, 24h: 49 h
T = DEFAULTS
EVAL = "10m"  # past every `for:` of the defaults (5 min; Redis: 1 min)
R = 'job="redis",instance="redis-exporter"'
M = 'job="tenants",instance="tenant-metrics",tenant="b"'
MB = {"job": "tenants", "instance": "tenant-metrics", "tenant": "b"}  # M's labels, as an alert carries them
Q = M + ',queue="tenant-b"'  # the per-queue series of b's one queue (no CELERY_QUEUES: tenant-<name>)
P = 'job="postgres",instance="postgres-exporter"'
PB = {"job": "postgres", "instance": "postgres-exporter"}
LIMIT = 20  # DATABASE_CONNECTION_LIMIT's default
MB_BYTES = 2**20
QUEUE_ALERTS = ("TenantQueueBacklog", "TenantOldestTaskTooOld")  # fire per queue: their labels carry it


def _queue(name: str) -> str:
    return f'{M},queue="{name}"'


def _series(name: str, labels: str, values: str) -> dict:
    return {"series": f"{name}{{{labels}}}", "values": values}


# alert -> (input series, the labels it fires with besides alertname and severity)
FIRING = {
    "RedisDown": ([_series("up", R, "1 1 0x40")], {"job": "redis", "instance": "redis-exporter"}),
    "RedisMemoryHigh": ([_series("redis_memory_used_bytes", R, "810x40"),
                         _series("redis_memory_max_bytes", R, "1000x40")],
                        {"job": "redis", "instance": "redis-exporter"}),
    "RedisTooManyClients": ([_series("redis_connected_clients", R, f"{T['ALERT_REDIS_CLIENTS'] + 1}x40")],
                            {"job": "redis", "instance": "redis-exporter"}),
    "RedisNotPersisting": ([_series("redis_aof_last_write_status", R, "1 0x40"),
                            _series("redis_rdb_last_bgsave_status", R, "1x40")],
                           {"job": "redis", "instance": "redis-exporter"}),
    "TenantQueueBacklog": ([_series("tenantstack_queue_depth", Q, f"0 {T['ALERT_QUEUE_DEPTH'] + 100}x40")],
                           {**MB, "queue": "tenant-b"}),
    "TenantOldestTaskTooOld": ([_series("tenantstack_oldest_queued_task_age_seconds", Q,
                                        f"{T['ALERT_OLDEST_TASK_SECONDS'] + 1}+60x40")],
                               {**MB, "queue": "tenant-b"}),
    "TenantWorkerDown": ([_series("tenantstack_workers_alive", M, "1 0x40")],
                         {"job": "tenants", "instance": "tenant-metrics", "tenant": "b"}),
    "TenantBeatStale": ([_series("tenantstack_beat_heartbeat_age_seconds", M,
                                 f"{T['ALERT_BEAT_STALE_SECONDS'] + 1}+60x40")],
                        {"job": "tenants", "instance": "tenant-metrics", "tenant": "b"}),
    # 2 failed and 2 succeeded a minute: 50 % of 60 tasks in 15 min.
    "TenantTaskFailureRatioHigh": ([_series("tenantstack_tasks_finished_total", M + ',state="failed"', "0+2x40"),
                                    _series("tenantstack_tasks_finished_total", M + ',state="succeeded"', "0+2x40")],
                                   {"tenant": "b"}),
    "PostgresDown": ([_series("up", P, "1 1 0x40")], PB),
    # 17 of 20 connections: 85 % > 80 %
    "TenantDatabaseConnectionsHigh": ([_series("tenantstack_database_connections", M,
                                               f"{LIMIT * T['ALERT_DATABASE_CONNECTIONS_PERCENT'] // 100 + 1}x40"),
                                       _series("tenantstack_database_connection_limit", M, f"{LIMIT}x40")], MB),
    "TenantDatabaseTooLarge": ([_series("tenantstack_database_size_bytes", M,
                                        f"{(T['ALERT_DATABASE_SIZE_MB'] + 1) * MB_BYTES}x40")], MB),
    # promtool's clock starts at 0: a backup made just over two BACKUP_EVERY (24 h) and the hour's margin before it.
    "BackupMissing": ([_series("tenantstack_backup_last_verified_timestamp_seconds", 'job="ops",instance="receiver"',
                               f"{-(BACKUP_ALERT + 60)}x40")], {"job": "ops", "instance": "receiver"}),
    "BackupCopyFailed": ([_series("tenantstack_backup_copy_failed", 'job="ops",instance="receiver"', "0 1x40")],
                         {"job": "ops", "instance": "receiver"}),
    "CertificateExpiring": ([_series("tenantstack_certificate_expiry_timestamp_seconds",
                                     'job="ops",instance="receiver",certificate="redis"',
                                     f"{(T['ALERT_CERT_DAYS'] - 1) * 86400}x40")],
                            {"job": "ops", "instance": "receiver", "certificate": "redis"}),
    "MonitoringTargetDown": ([_series("up", M, "1 0x40")],
                             {"job": "tenants", "instance": "tenant-metrics", "tenant": "b"}),
}

# A healthy deployment: every metric the rules read, well inside its threshold.
HEALTHY = [
    _series("up", R, "1x40"), _series("up", M, "1x40"), _series("redis_up", R, "1x40"),
    _series("redis_memory_used_bytes", R, "100x40"), _series("redis_memory_max_bytes", R, "1000x40"),
    _series("redis_connected_clients", R, "20x40"), _series("redis_aof_last_write_status", R, "1x40"),
    _series("redis_aof_last_bgrewrite_status", R, "1x40"), _series("redis_rdb_last_bgsave_status", R, "1x40"),
    _series("tenantstack_queue_depth", Q, "3x40"), _series("tenantstack_oldest_queued_task_age_seconds", Q, "2x40"),
    _series("tenantstack_workers_alive", M, "1x40"), _series("tenantstack_beat_heartbeat_age_seconds", M, "5x40"),
    _series("tenantstack_tasks_finished_total", M + ',state="failed"', "0+0x40"),
    _series("tenantstack_tasks_finished_total", M + ',state="succeeded"', "0+10x40"),
    _series("up", P, "1x40"), _series("pg_up", P, "1x40"),
    _series("tenantstack_database_connections", M, f"{LIMIT * T['ALERT_DATABASE_CONNECTIONS_PERCENT'] // 100}x40"),
    _series("tenantstack_database_connection_limit", M, f"{LIMIT}x40"),
    # a role without a limit (rolconnlimit -1) never reads as over it
    _series("tenantstack_database_connections", 'job="tenants",instance="tenant-metrics",tenant="c"', "50x40"),
    _series("tenantstack_database_connection_limit", 'job="tenants",instance="tenant-metrics",tenant="c"', "-1x40"),
    _series("tenantstack_database_size_bytes", M, f"{T['ALERT_DATABASE_SIZE_MB'] * MB_BYTES}x40"),
    # a backup 49 h before promtool's clock starts: inside the threshold for the 10 minutes evaluated
    _series("tenantstack_backup_last_verified_timestamp_seconds", 'job="ops",instance="receiver"',
            f"{-(BACKUP_ALERT - 3600)}x40"),
    _series("tenantstack_backup_copy_failed", 'job="ops",instance="receiver"', "0x40"),
    _series("tenantstack_certificate_expiry_timestamp_seconds", 'job="ops",instance="receiver",certificate="redis"',
            f"{400 * 86400}x40"),
]

# Tenant b with two queues (CELERY_QUEUES=default,reports): each queue is compared with the thresholds on its own.
DEPTH, AGE = T["ALERT_QUEUE_DEPTH"], T["ALERT_OLDEST_TASK_SECONDS"]


def _two_queues(depths: dict[str, str], ages: dict[str, str], backlog: list[str], too_old: list[str]) -> dict:
    """A promtool test: b's two queues with these depth and age series; the queues each alert fires for."""
    series = [_series("tenantstack_queue_depth", _queue(q), v) for q, v in depths.items()]
    series += [_series("tenantstack_oldest_queued_task_age_seconds", _queue(q), v) for q, v in ages.items()]
    expect = {"TenantQueueBacklog": backlog, "TenantOldestTaskTooOld": too_old}
    return {"interval": "1m", "input_series": series, "alert_rule_test": [
        {"eval_time": EVAL, "alertname": name,
         "exp_alerts": [{"exp_labels": {**MB, "queue": q, "severity": "warn"}} for q in queues]}
        for name, queues in expect.items()]}


TWO_QUEUES = [
    # Only reports is behind: one alert each, for reports; default's healthy series neither fires nor hides it.
    _two_queues({"default": "3x40", "reports": f"0 {DEPTH + 100}x40"},
                {"default": "2x40", "reports": f"{AGE + 1}+60x40"}, ["reports"], ["reports"]),
    # Both behind: an alert per queue, told apart by their queue label.
    _two_queues({"default": f"{DEPTH + 1}x40", "reports": f"{DEPTH + 100}x40"},
                {"default": f"{AGE + 1}+60x40", "reports": f"{AGE + 1}+60x40"},
                ["default", "reports"], ["default", "reports"]),
    # Each queue under the thresholds although together they are over: nothing fires (the limits are per queue).
    _two_queues({"default": f"{DEPTH // 2 + 1}x40", "reports": f"{DEPTH // 2 + 1}x40"},
                {"default": f"{AGE // 2}x40", "reports": f"{AGE // 2}x40"}, [], []),
]


def _rendered(thresholds=DEFAULTS, tenants=("a", "b"), on_postgres=False) -> dict:
    rendered = config.files(tenants, thresholds, on_postgres)
    return {path.relative_to(config.CONFIG).as_posix(): text for path, text in rendered.items()}


def _rules() -> list[dict]:
    doc = yaml.safe_load(_rendered()["prometheus/rules/alerts.yml"])
    return [rule for group in doc["groups"] for rule in group["rules"]]


def _tool(name: str) -> list[str]:
    """The command line of the monitoring image's promtool or amtool (`./invoke test` builds the image first)."""
    return image_rootfs.argv("monitoring", name)


def test_every_alert_has_a_case_and_a_summary_that_says_what_to_do():
    names = [r["alert"] for r in _rules()]
    assert len(names) == len(set(names)) and set(names) == set(FIRING)
    for rule in _rules():
        summary = rule["annotations"]["summary"]
        assert "./invoke" in summary, f"{rule['alert']}: its summary must say what to run"
        assert rule["labels"]["severity"] in ("page", "warn")
        if rule["alert"] in QUEUE_ALERTS:  # a backlog's alert says which tenant and which of its queues
            assert "{{ $labels.tenant }}" in summary and "{{ $labels.queue }}" in summary, rule["alert"]


def test_promtool_fires_each_alert_at_its_threshold_and_none_when_healthy(tmp_path):
    doc = yaml.safe_load(_rendered()["prometheus/rules/alerts.yml"])
    for group in doc["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations")
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(doc))
    severity = {r["alert"]: r["labels"]["severity"] for r in _rules()}
    tests = [{"interval": "1m", "input_series": series,
              "alert_rule_test": [{"eval_time": EVAL, "alertname": name,
                                   "exp_alerts": [{"exp_labels": {**labels, "severity": severity[name]}}]}]}
             for name, (series, labels) in FIRING.items()]
    tests += TWO_QUEUES
    tests.append({"interval": "1m", "input_series": HEALTHY,
                  "alert_rule_test": [{"eval_time": EVAL, "alertname": name, "exp_alerts": []} for name in FIRING]})
    # Not before `for:` has passed: a backlog of 4 minutes has not fired yet.
    tests.append({"interval": "1m", "input_series": FIRING["TenantQueueBacklog"][0],
                  "alert_rule_test": [{"eval_time": "4m", "alertname": "TenantQueueBacklog", "exp_alerts": []}]})
    (tmp_path / "test.yml").write_text(yaml.safe_dump({"rule_files": ["alerts.yml"], "tests": tests}))
    proc = subprocess.run([*_tool("promtool"), "test", "rules", "test.yml"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]


def test_rendered_configurations_load_and_the_commented_receivers_too(tmp_path):
    files = _rendered()
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.replace("/etc/tenantstack/prometheus", str(tmp_path / "prometheus")))
    checked = subprocess.run([*_tool("promtool"), "check", "config", str(tmp_path / "prometheus/prometheus.yml")],
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "1 rule files found" in checked.stdout
    am = tmp_path / "alertmanager/alertmanager.yml"
    checked = subprocess.run([*_tool("amtool"), "check-config", str(am)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # The documented email and Slack receivers, uncommented, are valid Alertmanager 0.28 configuration.
    text = am.read_text()
    text = re.sub(r"(?m)^  # (routes:|  - receiver:|    continue:|    matchers:)", r"  \1", text)
    text = re.sub(r"(?m)^  # (- name: ops-|  (email|slack)_configs:|    [-a-z_ ]+[:-])", r"  \1", text)
    am.write_text(text)
    checked = subprocess.run([*_tool("amtool"), "check-config", str(am)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0 and "3 receivers" in checked.stdout, checked.stdout + checked.stderr + text


def test_one_threshold_changes_the_rule_and_every_placeholder_is_known():
    raised = {**DEFAULTS, "ALERT_QUEUE_DEPTH": 7, "ALERT_FOR_SECONDS": 10}
    rules = yaml.safe_load(_rendered(raised)["prometheus/rules/alerts.yml"])["groups"]
    backlog = next(r for g in rules for r in g["rules"] if r["alert"] == "TenantQueueBacklog")
    assert backlog["expr"] == "tenantstack_queue_depth > 7" and backlog["for"] == "10s"
    assert not [t for t in _rendered().values() if config.PLACEHOLDER.search(t)]
    targets = yaml.safe_load(_rendered()["prometheus/tenants.json"])
    assert [t["labels"]["tenant"] for t in targets] == ["a", "b"]
    # PostgreSQL: its size threshold in MB becomes bytes; its exporter is a target only while a tenant is on it
    raised = {**DEFAULTS, "ALERT_DATABASE_SIZE_MB": 3, "ALERT_DATABASE_CONNECTIONS_PERCENT": 90}
    rules = {r["alert"]: r for g in yaml.safe_load(_rendered(raised)["prometheus/rules/alerts.yml"])["groups"]
             for r in g["rules"]}
    assert rules["TenantDatabaseTooLarge"]["expr"] == f"tenantstack_database_size_bytes > {3 * MB_BYTES}"
    assert rules["TenantDatabaseConnectionsHigh"]["expr"].endswith("> 90")
    assert yaml.safe_load(_rendered()["prometheus/postgres.json"]) == []
    # BackupMissing follows the schedule: envs/backup.env's BACKUP_EVERY, twice, and an hour
    rules = {r["alert"]: r for g in yaml.safe_load(config.files(("a",), DEFAULTS, backup_every=6 * 3600)[
        config.PROMETHEUS_DIR / "rules" / "alerts.yml"])["groups"] for r in g["rules"]}
    assert rules["BackupMissing"]["expr"].endswith(f"> {13 * 3600}")
    assert yaml.safe_load(_rendered(on_postgres=True)["prometheus/postgres.json"]) == [
        {"targets": ["postgres-exporter:9187"], "labels": {}}]


@pytest.mark.parametrize("bad", ["ALERT_QUEUE_DEPTH=0", "ALERT_FOR_SECONDS=soon"])
def test_a_bad_threshold_is_one_line_naming_it_and_its_fix(tmp_path, bad):
    from deployment.errors import DeploymentError

    path = tmp_path / "monitoring.env"
    path.write_text(envs.render_monitoring_example().replace(f"{bad.split('=')[0]}=", f"{bad}\n#", 1))
    with pytest.raises(DeploymentError) as exc:
        config.settings(path)
    name = bad.split("=")[0]
    assert name in str(exc.value) and envs.MONITORING[name].fix in str(exc.value) and "\n" not in str(exc.value)
