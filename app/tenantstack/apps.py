"""The glue as a Django app (added to every project's INSTALLED_APPS): its management commands, and the Celery app.

ready() configures the project's Celery app for the deployment (tenantstack.celery) in every Django process, not
only in `celery -A tenantstack.celery` ones: a web request or a `manage.py shell` that sends a task through the
project's own app must publish to the tenant's broker over TLS, never to what the project's settings name.
"""
from django.apps import AppConfig


class TenantstackConfig(AppConfig):
    name = "tenantstack"
    label = "tenantstack"
    verbose_name = "tenantstack (the deployment's glue)"

    def ready(self):
        import tenantstack.celery  # noqa: F401 - configures the project's Celery app on import
