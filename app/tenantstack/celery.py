"""The tenant's Celery app. `celery -A tenantstack worker|beat|inspect|control` finds `app` here.

Importing this module validates the configuration first: a bad environment stops the worker,
beat or any celery command with one `config error: ...` line instead of a traceback.
"""
import os

from celery import Celery

import jobs.published  # noqa: F401 - stamps every published task with its publish time (for the metrics)
from jobs.liveness import BrokerPing
from tenantstack import env
from tenantstack.celery_config import celery_settings

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tenantstack.settings")

app = Celery("tenantstack", include=["jobs.tasks"])  # imported by workers once Django is set up
app.conf.update(celery_settings(env.load_or_exit()))
app.steps["consumer"].add(BrokerPing)  # the worker's liveness file, read by its healthcheck
