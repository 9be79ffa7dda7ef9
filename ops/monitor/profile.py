"""Starting the monitoring profile: what `up --monitoring` renders, which services it names, when it reloads.

Prometheus and Alertmanager read their configuration at start and on SIGHUP. `up` renders it before
Compose runs; a container Compose left running (its Compose definition unchanged) still has the old
files loaded, so it gets a SIGHUP when a file it reads changed. A container Compose just (re)started
read the new files already, and is left alone (a SIGHUP before Go installed its handler would kill it).
"""
import json

from deployment import naming
from ops.core.run import probe
from ops.deploy import compose, containers
from ops.monitor import config, textfile

RELOADS = {naming.PROMETHEUS_SERVICE: config.PROMETHEUS_DIR, naming.ALERTMANAGER_SERVICE: config.ALERTMANAGER_DIR}


def prepare(tenant_names) -> list:
    """Render the configuration (validating envs/monitoring.env) and ops' textfile metrics; the changed files."""
    changed = config.write_all(tenant_names)
    textfile.write_all()
    return changed


def services(tenant_names) -> list[str]:
    """The profile's services for these tenants: the shared four and each tenant's metrics exporter."""
    return [*naming.MONITORING_SERVICES, *(naming.metrics_service(t) for t in tenant_names)]


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
