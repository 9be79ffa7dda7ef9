"""Starting the monitoring profile: what `up --monitoring` renders, which services it names, when it reloads.

Prometheus and Alertmanager read their configuration at start and on SIGHUP. `up` renders it before
Compose runs; a container Compose left running (its Compose definition unchanged) still has the old
files loaded, so it gets a SIGHUP when a file it reads changed. A container Compose just (re)started
read the new files already, and is left alone (a SIGHUP before Go installed its handler would kill it).

PostgreSQL (issue 21): while a watched tenant is on PostgreSQL, prepare() also writes the PostgreSQL password files
of the monitoring roles (each tenant metrics exporter's, beside its Redis one; prometheus-postgres-exporter's in its
own folder), derived from REDIS_MONITORING_SECRET like every monitoring password (deployment/acl.py), and services()
names prometheus-postgres-exporter. Without a tenant on PostgreSQL a left-over exporter is removed.
"""
import json
import os
from pathlib import Path

from deployment import acl, naming
from deployment.instance import UIDS
from ops.config import tenants
from ops.config.envfile import redis_settings, write_private
from ops.config.paths import INSTANCE
from ops.core.run import probe
from ops.deploy import compose, containers
from ops.monitor import config, textfile

RELOADS = {naming.PROMETHEUS_SERVICE: config.PROMETHEUS_DIR, naming.ALERTMANAGER_SERVICE: config.ALERTMANAGER_DIR}


def _on_postgres(tenant_names) -> list[str]:
    return [n for n in tenant_names if tenants.env_path(n).exists() and tenants.declared(n).spec.on_postgres]


def prepare(tenant_names, log=print) -> list:
    """Render the configuration (validating envs/monitoring.env) and ops' textfile metrics, write the PostgreSQL
    monitoring passwords; the changed files."""
    on_postgres = _on_postgres(tenant_names)
    changed = config.write_all(tenant_names, bool(on_postgres))
    textfile.write_all()
    write_postgres_passwords(tenant_names, on_postgres)
    if not on_postgres and containers.is_running(naming.POSTGRES_EXPORTER_SERVICE):
        compose.run("rm", "--stop", "--force", naming.POSTGRES_EXPORTER_SERVICE, profiles=[compose.MONITORING_PROFILE],
                    quiet=True)
        log(f"monitoring: {naming.POSTGRES_EXPORTER_SERVICE} removed (no tenant is on PostgreSQL)")
    return changed


def _password_file(path: Path, text: str | None, uid: int) -> None:
    """A password file only `uid` reads (0400), written partial -> rename; None removes it. The folder is root's
    while it is written, then `uid`'s, read-only (0500), as ops/secrets/acl.py leaves the metrics users' folders."""
    if text is None:
        if path.exists():
            path.unlink()
        return
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    os.chown(folder, 0, 0)
    os.chmod(folder, 0o700)
    if not (path.exists() and path.read_text() == text):
        write_private(path, text, mode=0o400)
    os.chown(path, uid, uid)
    os.chown(folder, uid, uid)
    os.chmod(folder, 0o500)


def write_postgres_passwords(tenant_names, on_postgres) -> None:
    """The metrics roles' passwords into each watched tenant's metrics folder (removed when it left PostgreSQL), and
    tenantstack_monitor's for prometheus-postgres-exporter (while any tenant is on PostgreSQL)."""
    redis_env = redis_settings()
    for name in tenant_names:
        role = naming.database_metrics_role(name)
        folder = INSTANCE.monitoring_secrets / naming.metrics_user(name)
        if name in on_postgres or folder.is_dir():  # a tenant back on SQLite: its file is removed
            _password_file(folder / compose.METRICS_POSTGRES_PASSWORD_FILE,
                           acl.monitoring_password(redis_env, role) if name in on_postgres else None, UIDS["app"])
    _password_file(compose.POSTGRES_EXPORTER_SECRETS / compose.POSTGRES_EXPORTER_PASSWORD_FILE,
                   acl.monitoring_password(redis_env, naming.POSTGRES_MONITOR_ROLE) if on_postgres else None,
                   UIDS["monitoring"])


def services(tenant_names) -> list[str]:
    """The profile's services for these tenants: the shared four, prometheus-postgres-exporter while one of them is on
    PostgreSQL, and each tenant's metrics exporter."""
    postgres = [naming.POSTGRES_EXPORTER_SERVICE] if _on_postgres(tenant_names) else []
    return [*naming.MONITORING_SERVICES, *postgres, *(naming.metrics_service(t) for t in tenant_names)]


def started_at(names) -> dict[str, str]:
    """service -> its container's start time (absent when it does not run)."""
    out = {}
    for service in names:
        found = probe(["docker", "inspect", "--format", "{{json .State}}", containers.name(service)])
        if found.returncode == 0:
            state = json.loads(found.stdout or "{}")
            if state.get("Running"):
                out[service] = state.get("StartedAt", "")
    return out


def reload_changed(before: dict[str, str], changed, log=print) -> None:
    """SIGHUP the services that kept running through `up` while a file they read changed."""
    after = started_at(RELOADS)
    stale = [s for s, folder in RELOADS.items()
             if s in before and after.get(s) == before[s] and any(p.is_relative_to(folder) for p in changed)]
    if stale:
        compose.run("kill", "--signal", "SIGHUP", *stale, profiles=[compose.MONITORING_PROFILE], quiet=True)
        log(f"monitoring: {', '.join(stale)} reloaded the changed configuration")
