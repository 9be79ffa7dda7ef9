"""Wait until services are healthy, tolerating a transiently unhealthy one (e.g. a web whose broker restarts).

`docker compose up --wait` gives up the moment any container reports unhealthy; after a Redis restart
every tenant's web is briefly unhealthy, so `up` would fail although all recover seconds later.

Docker Engine before 25 (Debian 12's is 20.10) runs a container's first healthcheck one full interval
after the start (`start_interval` is newer), so a web with a 30 s interval would hold `up` for 30 s. While
the engine still says `starting`, the waiter therefore runs the container's own healthcheck command
itself (`docker exec`, the same command, user and time-out): a container whose check passes is ready. The
engine's own status follows at its first interval. On Podman, the healthcheck runner already checks every
second while a container starts.
"""
import json
import time

from ops.core.errors import OpsError
from ops.core.run import probe, wait_until
from ops.deploy import containers
from ops.engine import provision


def states(services: list[str], probe_starting: bool = False) -> dict[str, str]:
    """service -> healthy | starting | unhealthy | running (no healthcheck) | exited | missing.

    probe_starting: run the healthcheck of a container the engine still calls `starting` (see above);
    one that passes counts as healthy."""
    names = [containers.name(s) for s in services]
    out = probe(["docker", "inspect", *names])
    found = {c["Name"].lstrip("/"): c for c in json.loads(out.stdout or "[]")}
    result = {}
    for service, name in zip(services, names, strict=True):
        c = found.get(name)
        if c is None:
            result[service] = "missing"
        elif not c["State"].get("Running"):
            result[service] = "exited"
        else:
            health = c["State"].get("Health") or {}
            status = health.get("Status") or "running"
            if status == "starting" and probe_starting and check_passes(name, c["Config"].get("Healthcheck") or {}):
                status = "healthy"
            result[service] = status
    return result


def check_argv(healthcheck: dict) -> list[str] | None:
    """The healthcheck's command as `docker exec` takes it (CMD form as is, CMD-SHELL through sh)."""
    test = healthcheck.get("Test") or []
    if test[:1] == ["CMD"] and len(test) > 1:
        return test[1:]
    if test[:1] == ["CMD-SHELL"] and len(test[1:]) == 1:
        return ["/bin/sh", "-c", test[1]]
    return None


def check_passes(name: str, healthcheck: dict) -> bool:
    argv = check_argv(healthcheck)
    if argv is None:
        return False
    timeout = (healthcheck.get("Timeout") or 30 * 10**9) / 10**9  # nanoseconds, as the engine keeps it
    try:
        return probe(["docker", "exec", name, *argv], timeout=timeout + 5).returncode == 0
    except OpsError:  # the check hung past its time-out: not healthy yet
        return False


def _pending(services: list[str], probe_starting: bool) -> str | None:
    pending = {s: st for s, st in states(services, probe_starting).items() if st not in ("healthy", "running")}
    return ", ".join(f"{s} ({st})" for s, st in sorted(pending.items())) or None


def wait(services: list[str], timeout: float, log=print) -> None:
    provision.poke_healthcheck_runner()  # on Podman: notice the new containers now, not at its next listing
    probe_starting = provision.engine_in_use() == "docker"
    started = time.monotonic()

    def pending() -> str | None:
        # A first look without probing: an engine that already ran its checks answers at once.
        return _pending(services, probe_starting and time.monotonic() - started > 1)

    wait_until(pending, timeout=timeout, what="up", log=log, fix="see `./invoke logs --service <name>`")
