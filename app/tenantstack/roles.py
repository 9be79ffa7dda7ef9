"""The Redis roles a tenant declares beyond Celery's broker (REDIS_ROLES): each role's client configuration.

A role is two halves kept in step: an exact command set in the tenant's ACL user (deployment/acl.py
ROLE_COMMANDS, recorded from the very clients configured here) and, here, the configuration of those clients:

- cache: Django's own RedisCache (as TenantRedisCache) under `<prefix>cache:`, and sessions through it;
- results: Celery's Redis result backend, every key under the prefix (`global_keyprefix`);
- pubsub: application PUBLISH/SUBSCRIBE on `<prefix>app:<name>` with a redis-py client.

Every client speaks TLS with the tenant's client certificate (the broker's options, tenantstack.connection)
and authenticates as the tenant's ACL user, which the server confines to the tenant's prefix.

Not supported, on purpose: django-redis (its incr runs EVAL, delete_pattern/iter_keys SCAN, keys() KEYS, clear()
FLUSHDB: none of them is granted on the shared server; use the cache role, Django's built-in backend) and
channels_redis (its channel layer runs its own Lua with EVAL, flush() calls KEYS inside it, and its pub/sub layer
SUBSCRIBEs to names of its own; use the pubsub role: pubsub_client and app_channel).
`problems_with_user_settings` names either when a project's settings use it.

Cheap to import (standard library and deployment only): Django, Celery and redis are imported where used (the cache
class on first use, below), so the glue's settings module can import this before Django is set up.
"""
from collections.abc import Mapping

from deployment import naming

CACHE, RESULTS, PUBSUB = "cache", "results", "pubsub"
CACHE_TIMEOUT = 300  # Django's default, spelled out: an entry without its own timeout lives this long
CACHE_BACKEND = "tenantstack.roles.TenantRedisCache"
SESSION_ENGINE = "django.contrib.sessions.backends.cache"
CACHE_ALIAS = "default"
CONNECT_TIMEOUT = 5
# Like the broker's: a Redis that vanishes without closing the connection must not hang a request forever.
SOCKET_TIMEOUT = 30
HEALTH_CHECK_EVERY = 25  # redis-py PINGs a connection idle this long before using it (below the server's timeout)

NO_TIMEOUT = ("every cache entry needs a timeout: on the shared Redis an entry without one stays forever (no "
              "eviction: maxmemory-policy noeviction) and fills the memory every tenant shares; pass a number of "
              "seconds (or leave the timeout out for the cache's TIMEOUT)")
NO_CLEAR = ("cache.clear() is FLUSHDB, which would empty every tenant's keys on the shared Redis and is disabled "
            "there: delete your own entries with cache.delete_many(), or let their timeouts expire them")


def _tenant_redis_cache() -> type:
    from django.core.cache.backends.base import DEFAULT_TIMEOUT
    from django.core.cache.backends.redis import RedisCache

    class TenantRedisCache(RedisCache):
        """Django's RedisCache, refusing what the shared server must not get: entries without a timeout, and clear().

        Keys are Django's `KEY_PREFIX:version:key` with KEY_PREFIX `<prefix>cache` (django_caches), so every entry
        is under the tenant's prefix; the server refuses any other key anyway (the tenant's ACL)."""

        def __init__(self, server, params):
            super().__init__(server, params)
            if self.default_timeout is None:  # TIMEOUT: None in the settings
                raise ValueError(f"CACHES TIMEOUT is None: {NO_TIMEOUT}")

        def get_backend_timeout(self, timeout=DEFAULT_TIMEOUT):
            """Every timed call (set, add, touch, set_many, get_or_set) passes here: None would persist the key."""
            backend_timeout = super().get_backend_timeout(timeout)
            if backend_timeout is None:
                raise ValueError(f"cache timeout None: {NO_TIMEOUT}")
            return backend_timeout

        def clear(self):
            raise NotImplementedError(NO_CLEAR)

    TenantRedisCache.__module__, TenantRedisCache.__qualname__ = __name__, "TenantRedisCache"
    return TenantRedisCache


def __getattr__(name: str):
    """TenantRedisCache is built on first use (Django's import_string, or `from tenantstack.roles import ...`), so
    importing this module never imports Django's cache framework (PEP 562)."""
    if name == "TenantRedisCache":
        globals()[name] = cls = _tenant_redis_cache()
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def env_file(config) -> str:
    """Where the operator declares the tenant's roles."""
    return f"envs/{naming.env_file_name(config.tenant)}"


def _require(config, role: str) -> None:
    if role not in config.roles:
        raise ValueError(f"tenant {config.tenant} does not declare the {role} role (REDIS_ROLES="
                         f"{','.join(config.roles)}): add {role} to REDIS_ROLES in {env_file(config)}")


def _tls(config) -> dict:
    """The broker's TLS options (CA, client certificate and key, verified hostname, TLS 1.2+): one definition."""
    from tenantstack.connection import tls_options

    return tls_options(config)


def _connection(config) -> dict:
    """redis-py connection options of every role's client: the tenant's user, TLS, timeouts, its client name."""
    user = naming.redis_user(config.tenant)
    return {"username": user, "password": config.redis_password, **_tls(config),
            "socket_connect_timeout": CONNECT_TIMEOUT, "socket_timeout": SOCKET_TIMEOUT, "socket_keepalive": True,
            "health_check_interval": HEALTH_CHECK_EVERY, "client_name": user}


def django_caches(config) -> dict:
    """CACHES with the tenant's Redis cache as `default`; needs the cache role."""
    _require(config, CACHE)
    return {CACHE_ALIAS: {
        "BACKEND": CACHE_BACKEND,
        # No credentials in LOCATION: Django's debug page and `diffsettings` show it, while OPTIONS' `password`
        # is hidden like every setting named *PASS*. rediss: TLS; db 0, the only database (redis.conf).
        "LOCATION": f"rediss://{config.redis_host}:{config.redis_port}/{naming.BROKER_DB}",
        "KEY_PREFIX": naming.cache_key_prefix(config.tenant),  # Django's keys: <prefix>cache:<version>:<key>
        "TIMEOUT": CACHE_TIMEOUT,
        # Passed by Django to redis-py's ConnectionPool.from_url, i.e. to every connection.
        "OPTIONS": _connection(config),
    }}


def session_settings(config) -> dict:
    """Sessions in the tenant's Redis cache (cache role): no database table, and they expire with their cookie."""
    _require(config, CACHE)
    return {"SESSION_ENGINE": SESSION_ENGINE, "SESSION_CACHE_ALIAS": CACHE_ALIAS}


def celery_result_settings(config) -> dict:
    """Celery's Redis result backend for the tenant (results role), to update the app's configuration with."""
    from tenantstack.connection import RESULT_EXPIRES, redis_url

    _require(config, RESULTS)
    user = naming.redis_user(config.tenant)
    return {
        "result_backend": redis_url(config),  # rediss://, the tenant's user, db 0 (Celery masks the password)
        "redis_backend_use_ssl": _tls(config),
        # Celery prepends it to every task (celery-task-meta-*), group (celery-taskset-meta-*, and the chord
        # counters .j .t .s .d .c) and chord key, and so to the channels results are published on.
        "result_backend_transport_options": {"global_keyprefix": naming.key_prefix(config.tenant)},
        # Every result is written with SETEX: it expires by itself (no beat cleanup needed on Redis). Never None:
        # a result without expiry would stay forever on the shared server.
        "result_expires": RESULT_EXPIRES,
        "result_extended": True,  # task name, args and worker stored with the result, as with django-db
        "redis_socket_connect_timeout": CONNECT_TIMEOUT,
        "redis_socket_timeout": SOCKET_TIMEOUT,
        "redis_socket_keepalive": True,
        "redis_backend_health_check_interval": HEALTH_CHECK_EVERY,
        "redis_client_name": user,
    }


def pubsub_client(config):
    """A redis-py client for the application's PUBLISH/SUBSCRIBE on app_channel() names (pubsub role).

    Subscribe to each channel by its name (PSUBSCRIBE is not granted) and read with `get_message(timeout=...)` in a
    loop, which also PINGs an idle subscription every HEALTH_CHECK_EVERY seconds: a bare `listen()` blocks with no
    timeout at all (seen with redis-py 8.1), even on a connection that died silently."""
    import redis

    _require(config, PUBSUB)
    return redis.Redis(host=config.redis_host, port=config.redis_port, db=naming.BROKER_DB, ssl=True,
                       **_connection(config))


def app_channel(config, name: str) -> str:
    """The full name of the application channel `name`: `<prefix>app:<name>`."""
    if not name or not isinstance(name, str):
        raise ValueError(f"an application channel needs a non-empty name, got {name!r}")
    return naming.app_channel(config.tenant, name)


# ---- what a project's own settings need ------------------------------------------------------------------------
_DJANGO_REDIS = "django_redis"
_CHANNELS_REDIS = "channels_redis"


def _is_redis_url(value) -> bool:
    return isinstance(value, str) and value.split("://", 1)[0].lower() in {"redis", "rediss", "redis+socket"}


def _cache_problems(config, caches: Mapping) -> list[str]:
    declared = CACHE in config.roles
    out = []
    for alias, entry in (caches or {}).items():
        backend = str((entry or {}).get("BACKEND", ""))
        where = f"CACHES[{alias!r}]"
        if backend.startswith(_DJANGO_REDIS):
            out.append(f"{where} uses django-redis ({backend}), which the shared Redis does not support (it needs "
                       f"EVAL, SCAN, KEYS and FLUSHDB): use Django's own Redis cache through the cache role: "
                       f"{'' if declared else f'add cache to REDIS_ROLES in {env_file(config)} and '}drop "
                       f"{where} (the deployment sets CACHES['default'] to {CACHE_BACKEND})")
        elif "redis" in backend.lower():
            if not declared:
                out.append(f"{where} uses Redis ({backend}) but the tenant does not declare the cache role: add "
                           f"cache to REDIS_ROLES in {env_file(config)}")
            elif alias != CACHE_ALIAS:  # its own LOCATION: no tenant user, no TLS, no prefix
                out.append(f"{where} uses Redis ({backend}) on its own: the deployment configures only "
                           f"CACHES[{CACHE_ALIAS!r}] ({CACHE_BACKEND}: the tenant's user, TLS, its prefix); use "
                           f"caches[{CACHE_ALIAS!r}] for Redis, or another backend for {where}")
            elif (entry or {}).get("TIMEOUT", CACHE_TIMEOUT) is None:
                out.append(f"{where} has TIMEOUT None: {NO_TIMEOUT}")
    return out


def problems_with_user_settings(config, user_settings: Mapping, celery_conf: Mapping) -> list[str]:
    """One line per setting of the project that needs a Redis role the tenant did not declare, or is unsupported.

    user_settings: the project's Django settings (upper-case names); celery_conf: its Celery app's configuration
    (app.conf, or any mapping of lower-case Celery setting names), both before the deployment overrides them."""
    out = _cache_problems(config, user_settings.get("CACHES") or {})
    engine = str(user_settings.get("SESSION_ENGINE") or "")
    if engine.startswith(_DJANGO_REDIS) or "redis_sessions" in engine:
        out.append(f"SESSION_ENGINE {engine} talks to Redis on its own, which the shared Redis does not support: "
                   f"use {SESSION_ENGINE} with the cache role (add cache to REDIS_ROLES in {env_file(config)})")
    for alias, layer in (user_settings.get("CHANNEL_LAYERS") or {}).items():
        backend = str((layer or {}).get("BACKEND", ""))
        if backend.startswith(_CHANNELS_REDIS):
            out.append(f"CHANNEL_LAYERS[{alias!r}] uses channels_redis ({backend}), which the shared Redis does not "
                       f"support (it runs its own Lua with EVAL and KEYS): use the pubsub role (tenantstack.roles."
                       f"pubsub_client and app_channel; add pubsub to REDIS_ROLES in {env_file(config)})")
    backends = [("result_backend", celery_conf.get("result_backend")),
                ("CELERY_RESULT_BACKEND", user_settings.get("CELERY_RESULT_BACKEND"))]
    if RESULTS not in config.roles and any(_is_redis_url(value) for _, value in backends):
        name = next(n for n, value in backends if _is_redis_url(value))
        out.append(f"Celery's {name} is Redis but the tenant does not declare the results role: add results to "
                   f"REDIS_ROLES in {env_file(config)}")
    return out
