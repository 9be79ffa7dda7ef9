"""Tenant a's real Celery app plus one Broadcast() queue per CELERY_BROADCAST_QUEUES name: what a tenant's
own code declares when it wants every worker to get a task. `celery -A tests.app.broadcast_app worker`."""
import os

from kombu.common import Broadcast

from deployment import envs
from tenantstack.celery import app

NAMES, _ = envs.items(envs.TENANT["CELERY_BROADCAST_QUEUES"], os.environ.get("CELERY_BROADCAST_QUEUES", ""))
app.conf.task_queues = (*app.conf.task_queues, *[Broadcast(name) for name in NAMES])
