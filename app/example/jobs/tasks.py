"""The example project's Celery tasks."""
import time

from celery import shared_task
from django.conf import settings


@shared_task(bind=True, name="jobs.tasks.echo")
def echo(self, value):
    """Return the value with the tenant and the worker that ran it (proves the whole round trip)."""
    return {"value": value, "tenant": settings.TENANT, "worker": self.request.hostname}


@shared_task(bind=True, name="jobs.tasks.slow_echo")
def slow_echo(self, value, seconds=0.1):
    """echo after `seconds` of work (at most 10): long enough to kill a worker in the middle of it."""
    time.sleep(min(max(float(seconds), 0.0), 10.0))
    return {"value": value, "tenant": settings.TENANT, "worker": self.request.hostname}
