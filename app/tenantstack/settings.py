"""Django settings of the running tenant: tenant-independent ones plus those from the environment.

Importing this module validates the environment (tenantstack.env): a bad value stops web,
worker, beat or manage.py with one `config error: ...` line.
"""
import dj_database_url

from tenantstack import env
from tenantstack.settings_base import *  # noqa: F403

CONFIG = env.load_or_exit()
TENANT = CONFIG.tenant

SECRET_KEY = CONFIG.secret_key
ALLOWED_HOSTS = list(CONFIG.allowed_hosts)

# SQLite in WAL mode with IMMEDIATE transactions: a writer takes the lock when its transaction
# starts, and waits (busy timeout) instead of failing with "database is locked" when two worker
# processes store results or count down a chord at the same time.
SQLITE_BUSY_TIMEOUT_SECONDS = 30
SQLITE_INIT = "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
if CONFIG.database_url:
    DATABASES = {"default": dj_database_url.parse(CONFIG.database_url, conn_max_age=60, conn_health_checks=True)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(CONFIG.sqlite_path),
            # Kept open across tasks and requests: Celery's Django fixup closes a connection after every
            # task unless it has a max age, and opening one (connect, PRAGMAs, Django's ~30 SQL functions)
            # was a measurable part of each task's CPU (`./invoke bench`, section throughput).
            "CONN_MAX_AGE": 600,
            "CONN_HEALTH_CHECKS": True,
            "OPTIONS": {
                "transaction_mode": "IMMEDIATE",
                "timeout": SQLITE_BUSY_TIMEOUT_SECONDS,
                "init_command": SQLITE_INIT,
            },
        }
    }
