"""The monitoring profile's configuration, rendered from envs/monitoring.env and the model on every `up`.

monitoring/prometheus/prometheus.yml, monitoring/prometheus/rules/alerts.yml and
monitoring/alertmanager/alertmanager.yml are committed templates; each `__NAME__` in them is a row of
envs/monitoring.env (deployment/envs.py MONITORING_SETTINGS: the one place for thresholds and durations),
BackupMissing's threshold of envs/backup.env's BACKUP_EVERY (the schedule it watches), or a fact of the model
(service names, container ports). They are rendered into the instance's generated/monitoring/ (git-ignored, no
secrets, mounted read-only), together with tenants.json, the scrape targets of the tenants' metrics exporters, and
postgres.json, prometheus-postgres-exporter's target while a tenant is on PostgreSQL (an empty list otherwise: no
target, so no MonitoringTargetDown for a server that is not meant to run). `./invoke status` reads the same
thresholds.
"""
import json
import re
from pathlib import Path

from deployment import envs, naming
from deployment.durations import parse_duration
from ops.config import backup_policy, tenants
from ops.config.envfile import read_env, rel, require
from ops.config.paths import INSTANCE, ROOT
from ops.core.errors import OpsError

TEMPLATES = ROOT / "monitoring"
PROMETHEUS_TEMPLATE = TEMPLATES / "prometheus" / "prometheus.yml"
RULES_TEMPLATE = TEMPLATES / "prometheus" / "rules" / "alerts.yml"
ALERTMANAGER_TEMPLATE = TEMPLATES / "alertmanager" / "alertmanager.yml"
PLACEHOLDER = re.compile(r"__([A-Z][A-Z_]*[A-Z])__")
CONFIG = INSTANCE.monitoring_config
PROMETHEUS_DIR = CONFIG / "prometheus"
ALERTMANAGER_DIR = CONFIG / "alertmanager"
MAX_SCRAPE_TIMEOUT = 10  # seconds; Prometheus refuses a timeout above the interval


def settings(path: Path | None = None) -> dict[str, int]:
    """envs/monitoring.env, validated against its table: name -> whole number."""
    path = path or INSTANCE.monitoring_env
    values = read_env(path)
    require(values, envs.MONITORING_SETTINGS, path)
    return {s.name: envs.integer(s, envs.value_of(s, values))[0] for s in envs.MONITORING_SETTINGS}


def _target(service: str, port: int) -> str:
    return f"{service}:{port}"


def default_backup_every() -> int:
    return int(parse_duration(envs.BACKUP["BACKUP_EVERY"].default).total_seconds())


def values(thresholds: dict[str, int], backup_every: int | None = None) -> dict[str, str]:
    """Every placeholder of the templates -> its text; backup_every (seconds, envs/backup.env's BACKUP_EVERY) sets
    BackupMissing's threshold (the table's default when not given)."""
    out = {name: str(value) for name, value in thresholds.items()}
    out.update({
        "FOR": f"{thresholds['ALERT_FOR_SECONDS']}s",
        # Redis down or not persisting: every tenant is hit at once, so it is told sooner.
        "FOR_SHORT": f"{thresholds['ALERT_FOR_SECONDS'] // 5}s",
        "SCRAPE_TIMEOUT_SECONDS": str(min(MAX_SCRAPE_TIMEOUT, thresholds["PROMETHEUS_SCRAPE_SECONDS"])),
        "ALERT_BACKUP_MAX_AGE_SECONDS": str(envs.backup_alert_seconds(backup_every or default_backup_every())),
        "ALERT_CERT_SECONDS": str(thresholds["ALERT_CERT_DAYS"] * 86400),
        "ALERT_DATABASE_SIZE_BYTES": str(thresholds["ALERT_DATABASE_SIZE_MB"] * 2**20),
        "INSTANCE": INSTANCE.name,
        "PROMETHEUS_CONTAINER_PORT": str(naming.PROMETHEUS_CONTAINER_PORT),
        "ALERTMANAGER_TARGET": _target(naming.ALERTMANAGER_SERVICE, naming.ALERTMANAGER_CONTAINER_PORT),
        "EXPORTER_TARGET": _target(naming.EXPORTER_SERVICE, naming.EXPORTER_CONTAINER_PORT),
        "RECEIVER_TARGET": _target(naming.RECEIVER_SERVICE, naming.RECEIVER_CONTAINER_PORT),
    })
    return out


def render(template: Path, table: dict[str, str]) -> str:
    """The template with every __NAME__ filled; a placeholder the table lacks is a bug, said in one line."""
    text = template.read_text()
    unknown = sorted({m.group(1) for m in PLACEHOLDER.finditer(text)} - set(table))
    if unknown:
        raise OpsError(f"{rel(template)} uses {', '.join(unknown)}, which ops/monitor/config.py does not know")
    return PLACEHOLDER.sub(lambda m: table[m.group(1)], text)


def tenant_targets(tenant_names) -> list[dict]:
    """file_sd targets: each tenant's metrics exporter, labelled with its tenant."""
    return [{"targets": [_target(naming.metrics_service(t), naming.TENANT_METRICS_CONTAINER_PORT)],
             "labels": {"tenant": t}} for t in sorted(tenant_names)]


def postgres_targets(on_postgres: bool) -> list[dict]:
    """file_sd targets: prometheus-postgres-exporter while PostgreSQL is in use, else none."""
    if not on_postgres:
        return []
    return [{"targets": [_target(naming.POSTGRES_EXPORTER_SERVICE, naming.POSTGRES_EXPORTER_CONTAINER_PORT)],
             "labels": {}}]


def uses_postgres(tenant_names) -> bool:
    """Whether any of these tenants (with an env file) is on PostgreSQL: then the server and its exporter run."""
    return any(tenants.declared(n).spec.on_postgres for n in tenant_names if tenants.env_path(n).exists())


def _write(path: Path, text: str) -> bool:
    """Write a world-readable config file (no secrets; the monitoring UID reads it); True if it changed."""
    if path.exists() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    for folder in (p for p in [path.parent, *path.parent.parents] if p.is_relative_to(INSTANCE.generated)):
        folder.chmod(0o755)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.chmod(0o644)
    tmp.replace(path)
    return True


def files(tenant_names, thresholds: dict[str, int], on_postgres: bool = False,
          backup_every: int | None = None) -> dict[Path, str]:
    """Every rendered file -> its text."""
    table = values(thresholds, backup_every)
    return {
        PROMETHEUS_DIR / "prometheus.yml": render(PROMETHEUS_TEMPLATE, table),
        PROMETHEUS_DIR / "rules" / "alerts.yml": render(RULES_TEMPLATE, table),
        PROMETHEUS_DIR / "tenants.json": json.dumps(tenant_targets(tenant_names), indent=2) + "\n",
        PROMETHEUS_DIR / "postgres.json": json.dumps(postgres_targets(on_postgres), indent=2) + "\n",
        ALERTMANAGER_DIR / "alertmanager.yml": render(ALERTMANAGER_TEMPLATE, table),
    }


def write_all(tenant_names, on_postgres: bool = False) -> list[Path]:
    """Render everything into the instance's generated/monitoring/; returns the files that changed."""
    every = backup_policy.load().every_seconds
    return [path for path, text in files(tenant_names, settings(), on_postgres, every).items() if _write(path, text)]

