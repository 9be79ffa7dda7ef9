"""tenantstack: the glue between a tenant's own Django + Celery project and this deployment.

The base image installs this package beside (never inside) the project, which lives at /srv/app. The
project names its settings, Celery app and WSGI app in its env file (TENANT_DJANGO_SETTINGS,
TENANT_CELERY_APP, TENANT_WSGI_APP); every process runs through this package instead:

  tenantstack.settings  DJANGO_SETTINGS_MODULE: the project's settings, then what the deployment owns
  tenantstack.celery    `celery -A tenantstack.celery`: the project's Celery app, configured for the broker
  tenantstack.wsgi      gunicorn's application: the project's, behind /healthz (tenantstack.middleware)

This package deliberately imports nothing at import time, so tools can import its modules without a
tenant's configuration. Names and settings shared with the host come from the `deployment` package.
"""
