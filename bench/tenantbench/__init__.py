"""The bench: a no-op task on the tenant's own Celery app and the load drivers. Lives only in the bench image."""
