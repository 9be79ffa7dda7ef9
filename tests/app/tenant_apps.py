"""Celery apps built exactly like tenantstack.celery's, for any tenant, without Django (broker-only use)."""
from celery import Celery

from tenantstack import env
from tenantstack.celery_config import celery_settings
from tests.app.processes import tenant_env


def tenant_config(local_redis, tenant: str, data_dir, **overrides) -> env.Config:
    return env.read_config(tenant_env(local_redis, tenant, data_dir, **overrides))


def tenant_app(config: env.Config) -> Celery:
    """The tenant's broker side only: results are disabled (they need that tenant's Django)."""
    app = Celery(f"test-tenant-{config.tenant}", set_as_current=False)
    app.conf.update(celery_settings(config), result_backend=None)
    return app
