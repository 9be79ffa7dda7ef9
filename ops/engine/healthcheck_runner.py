"""Run Podman container healthchecks on their configured intervals (stand-in for systemd timers).

Podman schedules healthchecks with systemd transient timers; on a machine without systemd they never
run, containers stay "starting" forever, and `depends_on: condition: service_healthy` waits forever.
This loop runs `podman healthcheck run` for each running container whose interval has elapsed, in
parallel so one slow check never delays another. Standard library only: it is copied to
/usr/local/lib/tenantstack/ and started by `./invoke engine`.

Its own cost matters (it is part of the deployment's idle cost, measured by `./invoke bench`): one
`podman ps` costs about 60 CPU-ms and one `podman inspect` of twenty containers about 100, so listing
and inspecting every second alone kept 0.17 cores busy. It now lists every second only while a
container is still starting or just after `./invoke up` pokes it (touches POKE), and every RELIST
seconds otherwise; a container's healthcheck interval is read once per container id.
"""
import json
import os
import subprocess
import sys
import threading
import time

TICK = 1.0
RELIST = 10.0  # seconds between listings when nothing is starting: how late a container started by hand is seen
POKE = "/run/tenantstack/healthcheck-runner.poke"  # touched by ./invoke up: list every second for POKED seconds
POKED = 10.0
DEFAULT_INTERVAL = 30.0
START_INTERVAL = 1.0  # while a container is still "starting", check this often (Docker 25's start_interval)


def poked_at() -> float:
    try:
        return os.stat(POKE).st_mtime
    except OSError:
        return 0.0


def listed_with_healthcheck() -> tuple[list[str], set[str]]:
    """Ids of running containers that show a health status, and which of them are still starting."""
    out = subprocess.run(["podman", "ps", "--format", "json"], capture_output=True, text=True, timeout=30, check=False)
    if out.returncode != 0:
        return [], set()
    listed = json.loads(out.stdout or "[]")
    ids = [c["Id"] for c in listed if "(" in (c.get("Status") or "")]
    return ids, {c["Id"] for c in listed if "(starting)" in (c.get("Status") or "")}


def intervals(ids: list[str]) -> dict[str, float]:
    """id -> its configured healthcheck interval in seconds (a container's configuration never changes)."""
    if not ids:
        return {}
    inspected = subprocess.run(["podman", "inspect", "--format", "json", *ids], capture_output=True, text=True,
                               timeout=30, check=False)
    result = {}
    for c in json.loads(inspected.stdout or "[]") if inspected.returncode == 0 else []:
        hc = (c.get("Config") or {}).get("Healthcheck") or {}
        if hc.get("Test") and hc["Test"][0] != "NONE":
            result[c["Id"]] = (hc.get("Interval") or 0) / 1e9 or DEFAULT_INTERVAL
    return result


def check(cid: str, busy: set, lock: threading.Lock) -> None:
    try:
        subprocess.run(["podman", "healthcheck", "run", cid], capture_output=True, timeout=300, check=False)
    except subprocess.TimeoutExpired:
        pass
    finally:
        with lock:
            busy.discard(cid)


def main() -> None:
    last: dict[str, float] = {}  # id -> when its last check started
    known: dict[str, float] = {}  # id -> its interval, for every container ever inspected
    running: list[str] = []
    starting: set[str] = set()
    listed_at = -RELIST
    busy: set = set()
    lock = threading.Lock()
    print("healthcheck-runner: started", flush=True)
    while True:
        now = time.monotonic()
        if starting or now - listed_at >= RELIST or time.time() - poked_at() < POKED:
            try:
                running, starting = listed_with_healthcheck()
                known.update(intervals([cid for cid in running if cid not in known]))
            except (subprocess.TimeoutExpired, ValueError, OSError) as exc:
                print(f"healthcheck-runner: listing containers failed: {exc}", file=sys.stderr, flush=True)
                running, starting = [], set()
            listed_at = now
            for gone in set(known) - set(running):
                known.pop(gone, None)
                last.pop(gone, None)
        for cid in running:
            if cid not in known:
                continue  # no healthcheck of its own
            # A container not yet healthy is checked every START_INTERVAL, so it turns healthy as soon as it
            # is ready; afterwards its own interval applies.
            interval = min(known[cid], START_INTERVAL) if cid in starting else known[cid]
            with lock:
                if cid in busy or now - last.get(cid, -interval) < interval:
                    continue
                busy.add(cid)
            last[cid] = now
            threading.Thread(target=check, args=(cid, busy, lock), daemon=True).start()
        time.sleep(TICK)


if __name__ == "__main__":
    main()
