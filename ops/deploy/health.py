"""Wait until services are healthy, tolerating a transiently unhealthy one (e.g. a web whose broker restarts).

`docker compose up --wait` gives up the moment any container reports unhealthy; after a Redis restart
every tenant's web is briefly unhealthy, so `up` would fail although all recover seconds later.
"""
import json
import subprocess
import time

from ops.core.errors import OpsError
from ops.deploy import containers


def states(services: list[str]) -> dict[str, str]:
    """service -> healthy | starting | unhealthy | running (no healthcheck) | exited | missing."""
    names = [containers.name(s) for s in services]
    out = subprocess.run(["docker", "inspect", *names], capture_output=True, text=True)
    found = {c["Name"].lstrip("/"): c for c in json.loads(out.stdout or "[]")}
    result = {}
    for service, name in zip(services, names):
        c = found.get(name)
        if c is None:
            result[service] = "missing"
        elif not c["State"].get("Running"):
            result[service] = "exited"
        else:
            health = c["State"].get("Health") or {}
            result[service] = health.get("Status") or "running"
    return result


def wait(services: list[str], timeout: float, log=print) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while True:
        current = states(services)
        pending = {s: st for s, st in current.items() if st not in ("healthy", "running")}
        if not pending:
            return
        summary = ", ".join(f"{s} ({st})" for s, st in sorted(pending.items()))
        if summary != last:
            log(f"up: waiting for {summary}")
            last = summary
        if time.monotonic() > deadline:
            raise OpsError(f"not healthy after {timeout:.0f}s: {summary}: see `./invoke logs --service <name>`")
        time.sleep(0.5)
