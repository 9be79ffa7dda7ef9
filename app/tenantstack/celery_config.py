"""The Celery settings of one tenant, derived from its validated Config.

Isolation between tenants that share one Redis (DB 0) rests on two things set here:
every key and pub/sub channel kombu uses starts with naming.key_prefix(tenant)
(`global_keyprefix`, which also covers the pidbox/control broadcast channels), and the
connection authenticates as the tenant's ACL user, which Redis confines to that prefix.
"""
import ssl
from datetime import timedelta
from urllib.parse import quote

from kombu import Exchange, Queue
from kombu.common import Broadcast

from deployment import naming
from tenantstack.env import Config

RESULT_EXPIRES = timedelta(days=7)  # jobs.tasks.cleanup_stale_results deletes older results in batches
HEARTBEAT_EVERY = 10.0  # seconds between jobs.tasks.heartbeat runs
CLEANUP_EVERY = 3600.0  # seconds between jobs.tasks.cleanup_stale_results runs
BEAT_MAX_INTERVAL = 10  # beat wakes up (and touches DATA_DIR/beat.heartbeat) at least this often


def broker_url(config: Config) -> str:
    user = quote(naming.redis_user(config.tenant), safe="")
    password = quote(config.redis_password, safe="")
    return f"rediss://{user}:{password}@{config.redis_host}:{config.redis_port}/{naming.BROKER_DB}"


def broker_ssl_options(config: Config) -> dict:
    """Passed by kombu unchanged to redis-py's SSLConnection: verify the server's chain AND its name."""
    return {
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
        "ssl_ca_certs": str(config.tls_ca_file),
        "ssl_certfile": str(config.tls_cert_file),
        "ssl_keyfile": str(config.tls_key_file),
        "ssl_check_hostname": True,  # redis-py's default, spelled out: REDIS_HOST must be in the server's SANs
        "ssl_min_version": ssl.TLSVersion.TLSv1_2,
    }


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


def beat_schedule() -> dict:
    """Entries are keyed by name: restarting beat on the same schedule file updates them, never duplicates."""
    return {
        "heartbeat": {
            "task": "jobs.tasks.heartbeat",
            "schedule": HEARTBEAT_EVERY,
            "options": {"expires": HEARTBEAT_EVERY},  # a heartbeat nobody ran in time is worthless
        },
        "cleanup-stale-results": {
            "task": "jobs.tasks.cleanup_stale_results",
            "schedule": CLEANUP_EVERY,
            "options": {"expires": CLEANUP_EVERY},
        },
    }


def celery_settings(config: Config) -> dict:
    queue = config.queue
    exchange = Exchange(queue, type="direct")
    return {
        "broker_url": broker_url(config),
        "broker_use_ssl": broker_ssl_options(config),
        "broker_transport_options": broker_transport_options(config),
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,  # keep retrying while Redis restarts
        # One tenant queue, also the default exchange and routing key; workers consume it and the tenant's
        # declared Broadcast() queues (CELERY_BROADCAST_QUEUES: their exact PSUBSCRIBE patterns are in its ACL).
        "task_default_queue": queue,
        "task_default_exchange": queue,
        "task_default_exchange_type": "direct",
        "task_default_routing_key": queue,
        "task_queues": (Queue(queue, exchange, routing_key=queue), *map(Broadcast, config.broadcast_queues)),
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
        "result_backend": "django-db",
        "result_extended": True,
        "result_expires": RESULT_EXPIRES,
        "worker_concurrency": config.worker_concurrency,
        "worker_prefetch_multiplier": config.worker_prefetch_multiplier,
        # Off on purpose. With Redis an unacknowledged message stays in the unacked index across a lost
        # connection and comes back after visibility_timeout anyway, so cancelling buys nothing; and Celery
        # 5.7 also cancels tasks whose SUCCESS is already stored but not yet acknowledged, overwriting that
        # result with RETRY (seen in tests/containers/test_no_lost_tasks.py while Redis restarts).
        # Left running, the task finishes and its ack reaches Redis after the reconnect.
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "worker_send_task_events": False,
        "task_send_sent_event": False,
        "beat_schedule": beat_schedule(),
        "beat_scheduler": "jobs.beat:HeartbeatScheduler",
        "beat_schedule_filename": str(config.data_dir / "celerybeat-schedule"),
        "beat_max_loop_interval": BEAT_MAX_INTERVAL,
        "enable_utc": True,
        "timezone": "UTC",
    }
