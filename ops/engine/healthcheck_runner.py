"""Run Podman container healthchecks on their configured intervals (stand-in for systemd timers).

Podman schedules healthchecks with systemd transient timers; on a machine without systemd they never
run, containers stay "starting" forever, and `depends_on: condition: service_healthy` waits forever.
This loop lists running containers once a second and runs `podman healthcheck run` for each one whose
interval has elapsed, in parallel so one slow check never delays another. Standard library only: it is
copied to /usr/local/lib/tenantstack/ and started by `./invoke engine`.
"""
import json
import subprocess
import sys
import threading
import time

TICK = 1.0
DEFAULT_INTERVAL = 30.0
START_INTERVAL = 1.0  # while a container is still "starting", check this often (Docker 25's start_interval)


def running_with_healthcheck() -> dict[str, float]:
    """id -> seconds until its next check is due, for running containers that define a healthcheck.

    A container that has not been healthy yet is checked every START_INTERVAL seconds, so it turns
    healthy as soon as it is ready; afterwards its own interval applies (cheap in steady state).
    """
    out = subprocess.run(["podman", "ps", "--format", "json"], capture_output=True, text=True, timeout=30, check=False)
    if out.returncode != 0:
        return {}
    listed = json.loads(out.stdout or "[]")
    ids = [c["Id"] for c in listed if "(" in (c.get("Status") or "")]
    starting = {c["Id"] for c in listed if "(starting)" in (c.get("Status") or "")}
    if not ids:
        return {}
    inspected = subprocess.run(["podman", "inspect", "--format", "json", *ids], capture_output=True, text=True,
                               timeout=30, check=False)
    result = {}
    for c in json.loads(inspected.stdout or "[]") if inspected.returncode == 0 else []:
        hc = (c.get("Config") or {}).get("Healthcheck") or {}
        if hc.get("Test") and hc["Test"][0] != "NONE":
            interval = (hc.get("Interval") or 0) / 1e9 or DEFAULT_INTERVAL
            result[c["Id"]] = min(interval, START_INTERVAL) if c["Id"] in starting else interval
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
    last: dict[str, float] = {}
    busy: set = set()
    lock = threading.Lock()
    print("healthcheck-runner: started", flush=True)
    while True:
        try:
            containers = running_with_healthcheck()
        except (subprocess.TimeoutExpired, ValueError, OSError) as exc:
            print(f"healthcheck-runner: listing containers failed: {exc}", file=sys.stderr, flush=True)
            containers = {}
        now = time.monotonic()
        for cid, interval in containers.items():
            with lock:
                if cid in busy or now - last.get(cid, 0.0) < interval:
                    continue
                busy.add(cid)
            last[cid] = now
            threading.Thread(target=check, args=(cid, busy, lock), daemon=True).start()
        for gone in set(last) - set(containers):
            del last[gone]
        time.sleep(TICK)


if __name__ == "__main__":
    main()
