"""tenantstack: the Django project and Celery app of one tenant.

This package deliberately imports nothing at import time: the host-side ops tasks import
`tenantstack.naming` without any tenant configuration, and `celery -A tenantstack` finds the
Celery app in `tenantstack.celery` by itself.
"""
