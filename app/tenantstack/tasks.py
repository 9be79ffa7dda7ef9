"""The glue's own periodic tasks, added to every project's Celery app (tenantstack.celery includes this module).

Registered with shared_task, so they land on the project's app whatever it is called; their names are the glue's
(tenantstack.*), never a project's.
"""
import logging

from celery import current_app, shared_task
from django.conf import settings
from django.utils import timezone

from tenantstack.celery_config import CLEANUP_TASK, HEARTBEAT_TASK

logger = logging.getLogger(__name__)

CLEANUP_BUDGET_SHARE = 0.8  # of the soft time limit: stop between batches before the limit hits


@shared_task(bind=True, name=HEARTBEAT_TASK)
def heartbeat(self):
    """Run by beat every few seconds: its result and this log line show the tenant's pipeline is alive."""
    at = timezone.now().isoformat()
    logger.info("heartbeat tenant=%s worker=%s at=%s", settings.TENANT, self.request.hostname, at)
    return {"tenant": settings.TENANT, "worker": self.request.hostname, "at": at}


@shared_task(bind=True, name=CLEANUP_TASK)
def cleanup_stale_results(self):
    """Delete database results older than result_expires in short batches (replaces celery.backend_cleanup)."""
    from tenantstack.cleanup import delete_results_older_than

    app = current_app
    cutoff = timezone.now() - app.conf.result_expires
    budget = (self.request.timelimit[1] or app.conf.task_soft_time_limit or 0) * CLEANUP_BUDGET_SHARE
    report = delete_results_older_than(cutoff, max_seconds=budget or None)
    logger.info("cleanup tenant=%s cutoff=%s %s", settings.TENANT, cutoff.isoformat(), report)
    return report
