"""The Celery settings the deployment owns for one tenant, derived from its validated Config.

tenantstack.celery applies them over the project's own configuration; everything not here (task routes, the
project's periodic tasks, its task options) stays the project's.

Isolation between tenants that share one Redis (DB 0) rests on two things set here:
every key and pub/sub channel kombu uses starts with naming.key_prefix(tenant)
(`global_keyprefix`, which also covers the pidbox/control broadcast channels), and the
connection authenticates as the tenant's ACL user, which Redis confines to that prefix.
"""

from kombu import Exchange, Queue
from kombu.common import Broadcast

from deployment import naming
from tenantstack import connection, redis_transport, roles
from tenantstack.env import Config

# rediss:// is served by the glue's subclass of kombu's Redis transport: a worker survives an abrupt connection loss
# and puts back what it held (the module redis_transport says which kombu race it repairs).
redis_transport.register()

RESULT_EXPIRES = connection.RESULT_EXPIRES  # tenantstack.cleanup_stale_results deletes older results in batches
HEARTBEAT_EVERY = 10.0  # seconds between tenantstack.heartbeat runs
CLEANUP_EVERY = 3600.0  # seconds between tenantstack.cleanup_stale_results runs
GLUE_TASKS_MODULE = "tenantstack.tasks"  # the glue's own tasks, added to every project's Celery app
HEARTBEAT_TASK = "tenantstack.heartbeat"
CLEANUP_TASK = "tenantstack.cleanup_stale_results"
BEAT_SCHEDULER = "tenantstack.beat:TenantScheduler"
BEAT_BASE_SETTING = "tenantstack_beat_base"  # the project's own beat_scheduler, which TenantScheduler wraps
BEAT_MAX_INTERVAL = 10  # beat wakes up (and touches DATA_DIR/beat.heartbeat) at least this often


def restore_sweep_seconds(visibility_timeout: int) -> int:
    """A tenth of the visibility timeout, between 1 and 30 s: a cheap ZRANGE, so lost tasks wait little extra."""
    return max(1, min(30, visibility_timeout // 10))


def broker_transport_options(config: Config) -> dict:
    return {
        "global_keyprefix": naming.key_prefix(config.tenant),
        "visibility_timeout": config.visibility_timeout,
        # How soon a message held by a worker that died comes back: kombu sweeps the unacked index every
        # interval x throttle seconds (default 10 x 10 = 100 s, longer than a short visibility_timeout).
        "unacked_restore_interval": restore_sweep_seconds(config.visibility_timeout),
        "unacked_restore_throttle": 1,
        "fanout_prefix": True,
        "fanout_patterns": True,
        "socket_connect_timeout": 5,
        # A Redis that vanishes without closing the connection must not hang a publish (a web request)
        # forever; well above the 1 s BRPOP poll, so idle consumers are unaffected.
        "socket_timeout": 30,
        "socket_keepalive": True,
        "health_check_interval": 25,
        "client_name": naming.redis_user(config.tenant),
    }


def beat_schedule(config: Config | None = None) -> dict:
    """The glue's periodic tasks. Entries are keyed by name: restarting beat updates them, never duplicates.

    Results in Redis expire by themselves (result_expires is their TTL): no cleanup task for those."""
    entries = {
        # Named as before the glue existed: an upgraded beat keeps each entry's last run (celery matches by name).
        "heartbeat": {
            "task": HEARTBEAT_TASK,
            "schedule": HEARTBEAT_EVERY,
            "options": {"expires": HEARTBEAT_EVERY},  # a heartbeat nobody ran in time is worthless
        },
        "cleanup-stale-results": {
            "task": CLEANUP_TASK,
            "schedule": CLEANUP_EVERY,
            "options": {"expires": CLEANUP_EVERY},
        },
    }
    if config is not None and config.spec and config.spec.has("results"):
        del entries["cleanup-stale-results"]
    return entries


def task_queues(config: Config) -> tuple:
    """Every declared queue (CELERY_QUEUES) with a direct exchange of its own name, then the Broadcast() queues.

    A project routes a task with `task_routes`/`queue=`: Celery finds the queue here; a queue that is not declared
    raises QueueNotFound (task_create_missing_queues is off), so nothing waits where no pool consumes."""
    queues = tuple(Queue(q, Exchange(q, type="direct"), routing_key=q) for q in config.queues)
    return (*queues, *map(Broadcast, config.broadcast_queues))


def result_settings(config: Config) -> dict:
    if config.spec and config.spec.has("results"):
        return roles.celery_result_settings(config)
    return {"result_backend": "django-db", "result_extended": True, "result_expires": RESULT_EXPIRES}


def with_namespace(app, owned: dict) -> dict:
    """`owned`, plus each setting under the app's namespace (e.g. CELERY_RESULT_BACKEND) when it has one.

    A project loading its settings with config_from_object(..., namespace="CELERY") has them looked up by their
    prefixed name first; Celery 5.6 then prefers the project's CELERY_RESULT_BACKEND to a later
    conf.update(result_backend=...) (5.7 does not). Setting both names makes the deployment's value win on both."""
    prefix = (app.namespace or "").rstrip("_").upper()
    if not prefix:
        return owned
    return {**owned, **{f"{prefix}_{name.upper()}": value for name, value in owned.items()}}


def replaced_settings(project_conf, owned: dict) -> list[str]:
    """The settings the project set itself (to something other than Celery's default) that `owned` replaces."""
    from celery.app.defaults import DEFAULTS

    out = []
    for name, value in owned.items():
        if name in ("beat_schedule", "beat_scheduler", BEAT_BASE_SETTING):
            continue  # merged and wrapped, not replaced
        theirs = project_conf.get(name)
        if theirs is not None and theirs != DEFAULTS.get(name) and theirs != value:
            out.append(name)
    return out


def celery_settings(config: Config, project_conf=None) -> dict:
    """The owned settings; with `project_conf` (the project's app.conf) its beat schedule and scheduler are kept."""
    queue = config.queue
    project_schedule = dict(project_conf.get("beat_schedule") or {}) if project_conf is not None else {}
    taken = sorted(set(project_schedule) & set(beat_schedule()))
    if taken:
        raise ValueError(f"the project's beat_schedule uses the entry name {taken[0]!r}, which the deployment's own "
                         "periodic tasks use: rename that entry in the project")
    project_scheduler = project_conf.get("beat_scheduler") if project_conf is not None else None
    return {
        "broker_url": connection.redis_url(config),
        "broker_use_ssl": connection.tls_options(config),  # kombu passes them unchanged to redis-py's SSLConnection
        "broker_transport_options": broker_transport_options(config),
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,  # keep retrying while Redis restarts
        # The default queue (the first of CELERY_QUEUES) is also the default exchange and routing key; each pool's
        # workers consume their queues and the tenant's declared Broadcast() queues (CELERY_BROADCAST_QUEUES: their
        # exact PSUBSCRIBE patterns are in its ACL).
        "task_default_queue": queue,
        "task_default_exchange": queue,
        "task_default_exchange_type": "direct",
        "task_default_routing_key": queue,
        "task_queues": task_queues(config),
        "task_create_missing_queues": False,
        # At-least-once: a task is acknowledged after it ran; a killed worker's task comes back.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_time_limit": config.task_time_limit,
        "task_soft_time_limit": config.soft_time_limit,
        "task_track_started": True,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        **result_settings(config),
        "worker_concurrency": config.worker_pool.concurrency if config.spec else config.worker_concurrency,
        "worker_prefetch_multiplier": config.worker_prefetch_multiplier,
        # Off on purpose. With Redis an unacknowledged message stays in the unacked index across a lost
        # connection and comes back after visibility_timeout anyway, so cancelling buys nothing; and Celery
        # 5.7 also cancels tasks whose SUCCESS is already stored but not yet acknowledged, overwriting that
        # result with RETRY (seen in tests/containers/test_no_lost_tasks.py while Redis restarts).
        # Left running, the task finishes and its ack reaches Redis after the reconnect.
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "worker_send_task_events": False,
        "task_send_sent_event": False,
        "beat_schedule": {**project_schedule, **beat_schedule(config)},
        # The project's scheduler (celery's PersistentScheduler by default, or e.g. django-celery-beat's
        # DatabaseScheduler), wrapped by tenantstack.beat's mixin when beat starts (importing it here would need
        # Django's apps ready).
        "beat_scheduler": BEAT_SCHEDULER,
        BEAT_BASE_SETTING: project_scheduler if project_scheduler and project_scheduler != BEAT_SCHEDULER
        else "celery.beat:PersistentScheduler",
        "beat_schedule_filename": str(config.data_dir / "celerybeat-schedule"),
        "beat_max_loop_interval": BEAT_MAX_INTERVAL,
        "enable_utc": True,
        "timezone": "UTC",
    }
