"""What the deployment owns in a tenant's Django settings, and why; applied over the project's own settings.

  SECRET_KEY          from the tenant's secret file: the project never holds its own key
  DEBUG               False: a debug page shows settings and environment to whoever triggers an error
  ALLOWED_HOSTS       the web's service name and loopback (DJANGO_ALLOWED_HOSTS to widen it)
  DATABASES           SQLite on the tenant's volume (WAL, IMMEDIATE transactions), or with DATABASE=postgres the
                      tenant's own database and role on the deployment's PostgreSQL (TLS verify-full against the
                      deployment's CA, the password from its file), or DATABASE_URL's database (SQLite-era setups)
  INSTALLED_APPS      + django_celery_results (results in the database) and tenantstack (ensure_admin, export_db,
                      flush_results), appended when missing
  MIDDLEWARE          tenantstack.middleware.HealthzMiddleware first: /healthz answers before the project's
                      redirects (SECURE_SSL_REDIRECT), host checks and URLconf
  CACHES, SESSION_*   with the `cache` role: Django's RedisCache under the tenant's prefix, over TLS as the
                      tenant's user (tenantstack.roles); a project cache on Redis without the role is refused
  STATIC_ROOT         /srv/app/static when the project sets none (collected into the image at build time)
Everything else (apps, URLconf, templates, middleware, logging, auth, routing of tasks) stays the project's.
The Celery side is in tenantstack.celery_config, applied by tenantstack.celery.
"""
import os
import sys

from deployment import naming
from tenantstack import env, roles

# SQLite in WAL mode with IMMEDIATE transactions: a writer takes the lock when its transaction starts, and
# waits (busy timeout) instead of failing with "database is locked" when two worker processes store results
# or count down a chord at the same time.
SQLITE_BUSY_TIMEOUT_SECONDS = 30
SQLITE_INIT = "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
GLUE_APPS = ("django_celery_results", "tenantstack")
HEALTHZ_MIDDLEWARE = "tenantstack.middleware.HealthzMiddleware"
DEFAULT_STATIC_ROOT = "/srv/app/static"
ROLE_VAR = "TENANTSTACK_ROLE"  # web | worker | beat, exported by the entrypoint


# PostgreSQL: connections kept across requests and tasks, checked before reuse (a restarted server, an idle timeout).
# Each thread or process holds at most one, which is what the role's CONNECTION LIMIT was checked against
# (deployment/tenant.py database_connections_needed), so keeping them open never exceeds it.
POSTGRES_CONN_MAX_AGE = 300


def postgres_database(config: env.Config) -> dict:
    """The tenant's database on the deployment's PostgreSQL, from its parts (names from deployment/naming.py)."""
    return {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": config.database_host,
        "PORT": config.database_port,
        "NAME": naming.database_name(config.tenant),
        "USER": naming.database_role(config.tenant),
        "PASSWORD": config.database_password,
        "CONN_MAX_AGE": POSTGRES_CONN_MAX_AGE,
        "CONN_HEALTH_CHECKS": True,
        # verify-full: the server's certificate must be signed by the deployment's CA *and* name the host we asked
        # for (`postgres`), so nothing else on a tenant network can pose as the server and collect the password.
        "OPTIONS": {"sslmode": "verify-full", "sslrootcert": str(config.tls_ca_file)},
    }


def databases(config: env.Config) -> dict:
    if config.on_postgres:
        return {"default": postgres_database(config)}
    if config.database_url:
        import dj_database_url

        return {"default": dj_database_url.parse(config.database_url, conn_max_age=60, conn_health_checks=True)}
    return {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(config.sqlite_path),
            # Kept open across tasks and requests: Celery's Django fixup closes a connection after every task
            # unless it has a max age, and opening one (connect, PRAGMAs, Django's ~30 SQL functions) was a
            # measurable part of each task's CPU (`./invoke bench`, section throughput).
            "CONN_MAX_AGE": 600,
            "CONN_HEALTH_CHECKS": True,
            "OPTIONS": {
                "transaction_mode": "IMMEDIATE",
                "timeout": SQLITE_BUSY_TIMEOUT_SECONDS,
                "init_command": SQLITE_INIT,
            },
        }
    }


def owned(config: env.Config, ns: dict) -> dict:
    """name -> the value the deployment sets, given the project's settings `ns`."""
    apps = list(ns.get("INSTALLED_APPS", ()))
    values = {
        "SECRET_KEY": config.secret_key,
        "DEBUG": False,
        "ALLOWED_HOSTS": list(config.allowed_hosts),
        "DATABASES": databases(config),
        "INSTALLED_APPS": [*apps, *[a for a in GLUE_APPS if a not in apps]],
        "MIDDLEWARE": [HEALTHZ_MIDDLEWARE, *[m for m in ns.get("MIDDLEWARE", ()) if m != HEALTHZ_MIDDLEWARE]],
        "STATIC_ROOT": ns.get("STATIC_ROOT") or DEFAULT_STATIC_ROOT,
    }
    if config.spec.has("cache"):
        values["CACHES"] = roles.django_caches(config)
        values.update(roles.session_settings(config))
    return values


EXTENDED = ("INSTALLED_APPS", "MIDDLEWARE")  # the project's list kept, the glue's entries added


def apply(ns: dict, config: env.Config) -> list[str]:
    """Override the owned settings in `ns` (a settings module's globals); return (and log once) what was replaced.

    The log line is written by the long-running roles only (TENANTSTACK_ROLE, set by the entrypoint): a manage.py
    command's output stays its own, and an error stays one line."""
    problems = roles.problems_with_user_settings(config, ns, {})
    if problems:
        print(f"config error: {'; '.join(problems)}", file=sys.stderr, flush=True)
        raise SystemExit(env.EXIT_CONFIG)
    replaced, added, extended = [], [], []
    for name, value in owned(config, ns).items():
        if name not in ns:
            added.append(name)
        elif ns[name] != value:
            (extended if name in EXTENDED else replaced).append(name)
        ns[name] = value
    if os.environ.get(ROLE_VAR):
        print(f"tenantstack: tenant {config.tenant} ({os.environ[ROLE_VAR]}): settings "
              f"{config.spec.project.django_settings}: the deployment replaced {', '.join(replaced) or 'nothing'}; "
              f"set {', '.join(added) or 'nothing else'}; extended {', '.join(extended) or 'nothing'} "
              "(README, Bring your own project)", file=sys.stderr, flush=True)
    return replaced
