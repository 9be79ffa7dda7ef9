"""Wait until services are healthy, tolerating a transiently unhealthy one (e.g. a web whose broker restarts).

`docker compose up --wait` gives up the moment any container reports unhealthy; after a Redis restart
every tenant's web is briefly unhealthy, so `up` would fail although all recover seconds later.
"""
import json

from ops.core.run import probe, wait_until
from ops.deploy import containers
from ops.engine import provision


def states(services: list[str]) -> dict[str, str]:
    """service -> healthy | starting | unhealthy | running (no healthcheck) | exited | missing."""
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
            result[service] = health.get("Status") or "running"
    return result


def _pending(services: list[str]) -> str | None:
    pending = {s: st for s, st in states(services).items() if st not in ("healthy", "running")}
    return ", ".join(f"{s} ({st})" for s, st in sorted(pending.items())) or None


def wait(services: list[str], timeout: float, log=print) -> None:
    provision.poke_healthcheck_runner()  # on Podman: notice the new containers now, not at its next listing
    wait_until(lambda: _pending(services), timeout=timeout, what="up", log=log,
               fix="see `./invoke logs --service <name>`")
