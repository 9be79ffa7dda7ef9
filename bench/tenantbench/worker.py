"""The bench's Celery app: the tenant's own app (tenantstack.celery) with a no-op task, in one of three configurations.

`celery -A tenantbench.worker worker` runs it; the drivers import it so they publish with the same settings.
BENCH_CONFIG picks the Celery settings; image, env file, services and commands are the same for all three:
  A  the deployment as shipped: nothing changed (TLS, ACL user, acks_late, track_started, extended results)
  B  the same settings on the plain Redis BENCH_PLAIN_BROKER names (no TLS, no ACL)
  C  a vanilla peer: Celery's own defaults as a typical Django project leaves them (plain redis://, no acks_late,
     no track_started, no extended results, prefetch 4, no transport options), still django-db on SQLite
"""
import os
import time

from tenantstack.celery import app
from tenantstack.celery_config import with_namespace

CONFIG = os.environ.get("BENCH_CONFIG", "A")
if CONFIG not in ("A", "B", "C"):
    raise SystemExit(f"bench: BENCH_CONFIG={CONFIG!r} is not one of A, B, C")

# Through with_namespace, as the glue sets them: the project's app reads CELERY_-prefixed names first.
if CONFIG in ("B", "C"):
    app.conf.update(with_namespace(app, {"broker_url": os.environ["BENCH_PLAIN_BROKER"], "broker_use_ssl": None}))
if CONFIG == "C":
    app.conf.update(with_namespace(app, {
        "task_acks_late": False,
        "task_reject_on_worker_lost": False,
        "task_track_started": False,
        "result_extended": False,
        "worker_prefetch_multiplier": 4,
        "broker_transport_options": {},
    }))


@app.task(name="tenantbench.noop")
def noop(sent: float, run: str) -> dict:
    """Does nothing but say when it started; `run` lets the driver find its own results."""
    return {"sent": sent, "started": time.time(), "run": run}
