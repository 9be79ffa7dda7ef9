"""The tenant's Celery tasks."""
import logging
import time

from django.conf import settings
from django.utils import timezone

from jobs.cleanup import delete_results_older_than
from tenantstack.celery import app

logger = logging.getLogger(__name__)

CLEANUP_BUDGET_SHARE = 0.8  # of the soft time limit: stop between batches before the limit hits


@app.task(bind=True, name="jobs.tasks.echo")
def echo(self, value):
    """Return the value with the tenant and the worker that ran it (proves the whole round trip)."""
    return {"value": value, "tenant": settings.TENANT, "worker": self.request.hostname}


@app.task(bind=True, name="jobs.tasks.slow_echo")
def slow_echo(self, value, seconds=0.1):
    """echo after `seconds` of work (at most 10): long enough to kill a worker in the middle of it."""
    time.sleep(min(max(float(seconds), 0.0), 10.0))
    return {"value": value, "tenant": settings.TENANT, "worker": self.request.hostname}


@app.task(bind=True, name="jobs.tasks.heartbeat")
def heartbeat(self):
    """Run by beat every few seconds: its TaskResult and this log line show the tenant's pipeline is alive."""
    at = timezone.now().isoformat()
    logger.info("heartbeat tenant=%s worker=%s at=%s", settings.TENANT, self.request.hostname, at)
    return {"tenant": settings.TENANT, "worker": self.request.hostname, "at": at}


@app.task(bind=True, name="jobs.tasks.cleanup_stale_results")
def cleanup_stale_results(self):
    """Delete results older than result_expires in short batches (replaces celery.backend_cleanup)."""
    cutoff = timezone.now() - app.conf.result_expires
    budget = (self.request.timelimit[1] or app.conf.task_soft_time_limit or 0) * CLEANUP_BUDGET_SHARE
    report = delete_results_older_than(cutoff, max_seconds=budget or None)
    logger.info("cleanup tenant=%s cutoff=%s %s", settings.TENANT, cutoff.isoformat(), report)
    return report
