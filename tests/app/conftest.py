"""Fixtures for the app's tests: tenant a's environment, its Django (in this process), its real worker.

Django can be configured once per process, so the in-process side (views, cleanup, admin) is always
tenant a with a real SQLite file in a temp dir; everything else (workers, beat, gunicorn, config
errors, tenant b) runs as real subprocesses with their own environments.
"""
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.app.processes import start_worker, tenant_env

IN_PROCESS_KEYS_SKIPPED = {"PATH", "PYTHONPATH", "PYTHONDONTWRITEBYTECODE", "LANG"}


@pytest.fixture(scope="session")
def data_dir_a(tmp_path_factory):
    return tmp_path_factory.mktemp("tenant-a-data")


@pytest.fixture(scope="session")
def env_a(local_redis, data_dir_a):
    return tenant_env(local_redis, "a", data_dir_a)


@pytest.fixture(scope="session")
def django_app(env_a, tmp_path_factory):
    """Tenant a's Django in this process: configured from env_a, migrated, admin static collected."""
    os.environ.update({k: v for k, v in env_a.items() if k not in IN_PROCESS_KEYS_SKIPPED})
    os.environ["DJANGO_SETTINGS_MODULE"] = "tenantstack.settings"
    import django
    from django.conf import settings
    from django.core.management import call_command
    from django.test.utils import setup_test_environment

    django.setup()
    setup_test_environment()
    settings.STATIC_ROOT = tmp_path_factory.mktemp("static")  # the image collects into /srv/app/static
    call_command("migrate", verbosity=0)
    call_command("collectstatic", interactive=False, verbosity=0)
    return settings


@pytest.fixture(scope="session")
def worker_a(django_app, env_a, tmp_path_factory):
    """Tenant a's real prefork worker (2 processes), named as the entrypoint names it (celery@<hostname>)."""
    from tenantstack.healthcheck import worker_node_name

    worker = start_worker(env_a, tmp_path_factory.mktemp("logs") / "worker-a.log", worker_node_name())
    yield worker
    worker.stop()


@pytest.fixture
def client(django_app):
    from django.test import Client

    return Client()


@pytest.fixture
def world_readable_dir():
    """A folder outside pytest's root-only tmp tree, so an unprivileged uid can reach what is inside."""
    path = Path(tempfile.mkdtemp(prefix="tenantstack-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)
