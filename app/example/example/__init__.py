"""The example project: a small Django + Celery project deployed as a tenant like any other (README)."""
