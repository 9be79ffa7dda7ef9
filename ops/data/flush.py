"""Stale Celery artifacts in Redis under ONE tenant's prefix, found with SCAN and removed with UNLINK.

Never KEYS (blocks the server), never FLUSHDB (everyone's data). Only these shapes are touched, and only
when idle (no read or write) for longer than the cutoff:
  <prefix>celery-task-meta-*          results stored in Redis by a redis result backend
  <prefix>*.reply.celery.pidbox       reply queues of `celery inspect/control` clients that went away
Queues, bindings (_kombu.binding.*) and the unacked index are never candidates.
"""
import time
from datetime import timedelta

from deployment import naming

PATTERNS = ("celery-task-meta-*", "*.reply.celery.pidbox")
SCAN_COUNT = 1000
UNLINK_BATCH = 500


def stale_keys(client, tenant: str, older_than: timedelta):
    """Yield batches of keys of this tenant idle for longer than older_than."""
    prefix = naming.key_prefix(tenant)
    cutoff = older_than.total_seconds()
    for pattern in PATTERNS:
        batch = []
        for key in client.scan_iter(match=prefix + pattern, count=SCAN_COUNT):
            batch.append(key)
            if len(batch) >= SCAN_COUNT:
                yield _idle(client, batch, cutoff)
                batch = []
        if batch:
            yield _idle(client, batch, cutoff)


def _idle(client, keys: list, cutoff: float) -> list:
    pipe = client.pipeline(transaction=False)
    for k in keys:
        pipe.object("idletime", k)
    return [k for k, idle in zip(keys, pipe.execute(), strict=True) if idle is not None and idle > cutoff]


def flush(client, tenant: str, older_than: timedelta, dry_run: bool = False) -> dict:
    t0 = time.monotonic()
    found = removed = 0
    prefix = naming.key_prefix(tenant).encode()
    for keys in stale_keys(client, tenant, older_than):
        assert all(k.startswith(prefix) for k in keys)  # belt and braces: never outside the tenant
        found += len(keys)
        if not dry_run:
            for i in range(0, len(keys), UNLINK_BATCH):
                removed += client.unlink(*keys[i:i + UNLINK_BATCH])
    return {"found": found, "removed": removed, "seconds": time.monotonic() - t0}
