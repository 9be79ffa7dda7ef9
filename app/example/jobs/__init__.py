"""The tenant's jobs: Celery tasks, their HTTP API, results cleanup, beat scheduler, healthchecks."""
