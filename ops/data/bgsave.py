"""BGSAVE done right: record LASTSAVE, save, wait until it moved, check the status (after ghe-backup-redis)."""
import time

import redis
from ops.core.errors import OpsError
from ops.core.run import wait_until

FIX = "check `./invoke logs --service redis`, or retry with a larger --timeout"


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
    # LASTSAVE has one-second resolution: never start in the second of the previous save, or a fast
    # save could finish within that same second and look like nothing happened.
    before = client.lastsave()
    while int(time.time()) <= int(before.timestamp()):
        time.sleep(0.05)
    # Someone else's save may predate our writes: wait for it to end first.
    wait_until(lambda: "a BGSAVE already in progress" if _info(client).get("rdb_bgsave_in_progress") else None,
               timeout=timeout, what="bgsave", fix=FIX, interval=0.05)
    before = client.lastsave()
    # With an AOF rewrite running, plain BGSAVE is refused; SCHEDULE runs it as soon as the rewrite ends.
    schedule = bool(_info(client).get("aof_rewrite_in_progress"))
    try:
        client.execute_command("BGSAVE", *(["SCHEDULE"] if schedule else []))
    except redis.ResponseError as exc:
        raise OpsError(f"Redis refused BGSAVE: {exc}") from None
    log(f"bgsave: started{' (scheduled after the running AOF rewrite)' if schedule else ''}")
    return before, schedule


def wait(client: redis.Redis, started, timeout: float = 600) -> None:
    """Wait until LASTSAVE moved past the one before `start` and no save runs; insist the save succeeded."""
    before, scheduled = started
    last = {}

    def pending():
        info = last["info"] = _info(client)
        if info.get("rdb_bgsave_in_progress"):
            return "LASTSAVE to change"
        if client.lastsave() != before:
            return None
        if not scheduled and info.get("rdb_last_bgsave_status") == "err":
            return None  # ours ended (it was running right after BGSAVE) without moving LASTSAVE: it failed
        return "LASTSAVE to change"

    wait_until(pending, timeout=timeout, what="bgsave", fix=FIX, interval=0.05)
    status = last["info"].get("rdb_last_bgsave_status")
    if status != "ok":
        raise OpsError(f"BGSAVE failed (rdb_last_bgsave_status:{status}): "
                       "see `./invoke logs --service redis` (disk full? volume permissions?)")
