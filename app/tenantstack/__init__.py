"""tenantstack: the Django project and Celery app of one tenant.

This package deliberately imports nothing at import time, so `celery -A tenantstack` finds the
Celery app in `tenantstack.celery` by itself and tools can import its modules without a tenant's
configuration. Names and settings shared with the host come from the `deployment` package.
"""
