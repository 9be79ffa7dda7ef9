"""BGSAVE done right: record LASTSAVE, save, wait until it moved, check the status (after ghe-backup-redis)."""
import time

import redis
from ops.core.errors import OpsError


def _info(client: redis.Redis) -> dict:
    return client.info("persistence")


def bgsave(client: redis.Redis, timeout: float = 600, log=print) -> float:
    """Take a fresh RDB snapshot; return the seconds it took. One-line OpsError on timeout or failure."""
    t0 = time.monotonic()
    before = start(client, timeout, log)
    wait(client, before, timeout - (time.monotonic() - t0))
    seconds = time.monotonic() - t0
    log(f"bgsave: done in {seconds:.2f}s")
    return seconds


def start(client: redis.Redis, timeout: float = 600, log=print):
    """Issue BGSAVE (the snapshot is the dataset at this moment); returns what `wait` needs."""
    deadline = time.monotonic() + timeout
    # LASTSAVE has one-second resolution: never start in the second of the previous save, or a fast
    # save could finish within that same second and look like nothing happened.
    before = client.lastsave()
    while int(time.time()) <= int(before.timestamp()):
        time.sleep(0.05)
    while _info(client).get("rdb_bgsave_in_progress"):  # someone else's save: it may predate our writes
        _wait_step(deadline, timeout, "a BGSAVE already in progress")
    before = client.lastsave()
    # With an AOF rewrite running, plain BGSAVE is refused; SCHEDULE runs it as soon as the rewrite ends.
    schedule = bool(_info(client).get("aof_rewrite_in_progress"))
    try:
        client.execute_command("BGSAVE", *(["SCHEDULE"] if schedule else []))
    except redis.ResponseError as exc:
        raise OpsError(f"Redis refused BGSAVE: {exc}")
    log(f"bgsave: started{' (scheduled after the running AOF rewrite)' if schedule else ''}")
    return before, schedule


def wait(client: redis.Redis, started, timeout: float = 600) -> None:
    """Wait until LASTSAVE moved past the one before `start` and no save runs; insist the save succeeded."""
    before, scheduled = started
    deadline = time.monotonic() + timeout
    while True:
        info = _info(client)
        if not info.get("rdb_bgsave_in_progress"):
            if client.lastsave() != before:
                break
            if not scheduled and info.get("rdb_last_bgsave_status") == "err":
                break  # ours ended (it was running right after BGSAVE) without moving LASTSAVE: it failed
        _wait_step(deadline, timeout, "LASTSAVE to change")
    if info.get("rdb_last_bgsave_status") != "ok":
        raise OpsError(f"BGSAVE failed (rdb_last_bgsave_status:{info.get('rdb_last_bgsave_status')}): "
                       "see `./invoke logs --service redis` (disk full? volume permissions?)")


def _wait_step(deadline: float, timeout: float, what: str) -> None:
    if time.monotonic() > deadline:
        raise OpsError(f"timed out after {timeout:.0f}s waiting for {what}: check `./invoke logs --service redis`, "
                       "or retry with a larger --timeout")
    time.sleep(0.05)
