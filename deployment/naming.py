"""Every name derived from a tenant's short name lives here, once.

Both the app (inside the containers) and the ops tasks (on the host) import this module, so a
prefix, a queue, a Redis user, a channel pattern, a service or a volume is spelled in one place.
Ports here are the ports *inside* the containers; host ports belong to the instance (instance.py).
"""
import re

TENANT_NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,14}$")
TENANT_NAME_RULE = "a lowercase letter followed by up to 14 lowercase letters or digits"

REDIS_SERVICE = "redis"  # the Compose service name; also in the server certificate's SANs
REDIS_TLS_PORT = 6380  # the only port Redis listens on inside its container (TLS)
WEB_CONTAINER_PORT = 8000  # gunicorn inside every tenant web container
TOOLS_SERVICE = "redis-commander"
TOOLS_CONTAINER_PORT = 8081
# The monitoring profile (compose/monitoring.yaml): its services and the ports they listen on inside
# their containers (Prometheus and Alertmanager are also published on the instance's host ports).
MONITORING_PROFILE = "monitoring"
PROMETHEUS_SERVICE = "prometheus"
PROMETHEUS_CONTAINER_PORT = 9090
ALERTMANAGER_SERVICE = "alertmanager"
ALERTMANAGER_CONTAINER_PORT = 9093
EXPORTER_SERVICE = "redis-exporter"
EXPORTER_CONTAINER_PORT = 9121
RECEIVER_SERVICE = "alert-receiver"  # the webhook Alertmanager posts to; also serves ops' textfile metrics
RECEIVER_CONTAINER_PORT = 9095
TENANT_METRICS_CONTAINER_PORT = 9808  # each tenant's metrics exporter (jobs/metrics.py)
MONITORING_SERVICES = (PROMETHEUS_SERVICE, ALERTMANAGER_SERVICE, EXPORTER_SERVICE, RECEIVER_SERVICE)
BROKER_DB = 0  # every tenant shares DB 0; isolation is by key prefix + ACL, not by DB number
ROLES = ("web", "worker", "beat")
REDIS_DATA_VOLUME = "redis-data"  # the Compose volume (short name) of Redis' /data
# PostgreSQL (issue 21): one server for the tenants that declare DATABASE=postgres (deployment/postgres.py renders
# its roles, databases and pg_hba.conf). The service name is also its certificate's SAN: clients verify it
# (sslmode=verify-full), so it is the host they connect to on every tenant network it joins.
POSTGRES_SERVICE = "postgres"
POSTGRES_PROFILE = "postgres"  # its Compose profile: started when any tenant declares DATABASE=postgres
POSTGRES_PORT = 5432  # inside its container, TLS only (hostssl); never published on the host
POSTGRES_DATA_VOLUME = "postgres-data"  # the Compose volume (short name) of its data directory
POSTGRES_OPS_ROLE = "tenantstack_ops"  # ops' role over TLS (dumps, restores, checks): a member of each tenant role
POSTGRES_MONITOR_ROLE = "tenantstack_monitor"  # the exporter's role: pg_monitor, database `postgres` only
POSTGRES_MAINTENANCE_DB = "postgres"  # initdb's database: where the ops and monitor roles land, no tenant's data
# prometheus-postgres-exporter (monitoring profile, started only while a tenant is on PostgreSQL): connects as
# POSTGRES_MONITOR_ROLE over ops' own PostgreSQL network; its password file lives in secrets/<this name>/.
POSTGRES_EXPORTER_SERVICE = "postgres-exporter"
POSTGRES_EXPORTER_CONTAINER_PORT = 9187
_TENANT = "tenant-"  # the one spelling of the prefix every tenant-derived name starts with
_METRICS = "metrics"  # the suffix of a tenant's metrics exporter: its service and its Redis user


def is_valid_tenant_name(name: str) -> bool:
    return bool(TENANT_NAME_RE.match(name or ""))


def tenant_of(derived: str) -> str | None:
    """The tenant a derived name (service, user, profile) belongs to, or None for a shared one."""
    if not derived.startswith(_TENANT):
        return None
    rest = re.sub(r"-worker-[a-z][a-z0-9]{0,14}$", "-worker", derived[len(_TENANT):])  # a pool's worker service
    for role in (*ROLES, _METRICS):
        if rest.endswith(f"-{role}"):
            rest = rest[: -len(role) - 1]
    return rest if is_valid_tenant_name(rest) else None


def redis_user(tenant: str) -> str:
    """The tenant's Redis ACL user (also the CN of its client certificate)."""
    return f"{_TENANT}{tenant}"


def key_prefix(tenant: str) -> str:
    """kombu's global_keyprefix: every key and channel of the tenant starts with it."""
    return f"{_TENANT}{tenant}:"


def queue_name(tenant: str) -> str:
    """The tenant's default Celery queue."""
    return f"{_TENANT}{tenant}"


def compose_profile(tenant: str) -> str:
    return f"{_TENANT}{tenant}"


def backup_folder(tenant: str) -> str:
    """The folder of the tenant's own backups (one-tenant backups, pre-restore copies) inside the backups folder."""
    return f"{_TENANT}{tenant}"


def is_backup_folder(name: str) -> bool:
    """Whether a folder name inside the backups folder is some tenant's backup_folder()."""
    tenant = tenant_of(name)
    return tenant is not None and name == backup_folder(tenant)


def service_name(tenant: str, role: str) -> str:
    """Compose service of one tenant role: web, worker or beat."""
    return f"{_TENANT}{tenant}-{role}"


def pool_service(tenant: str, pool: str) -> str:
    """Compose service of one worker pool: the default pool keeps tenant-<t>-worker, others tenant-<t>-worker-<pool>."""
    worker = service_name(tenant, "worker")
    return worker if pool == "default" else f"{worker}-{pool}"


def metrics_service(tenant: str) -> str:
    """Compose service of the tenant's metrics exporter (monitoring profile, on the monitoring network only)."""
    return service_name(tenant, _METRICS)


def metrics_user(tenant: str) -> str:
    """The read-only Redis ACL user of the tenant's metrics exporter (also the CN of its client certificate).

    Cannot clash with a tenant's own user: tenant names hold no dash."""
    return f"{_TENANT}{tenant}-{_METRICS}"


def unacked_key(tenant: str) -> str:
    """kombu's hash of delivered, not yet acknowledged messages (its `unacked_key`, under the tenant's prefix)."""
    return f"{key_prefix(tenant)}unacked"


def queue_key(tenant: str) -> str:
    """The Redis list holding the tenant's queued messages (kombu: prefix + queue name; priority 0)."""
    return f"{key_prefix(tenant)}{queue_name(tenant)}"


def worker_events_pattern(tenant: str) -> str:
    """The pattern a receiver of the tenant's worker events (heartbeat, online, offline) PSUBSCRIBEs.

    Celery sends worker-heartbeat to the `celeryev` fanout exchange with routing key worker.heartbeat; on
    Redis with fanout_patterns kombu publishes it to <prefix>/<db>.celeryev/worker.heartbeat. The same
    literal pattern is in the tenant's own ACL (acl_channel_patterns: `worker.#` -> `worker.*`)."""
    return f"{key_prefix(tenant)}/{BROKER_DB}.celeryev/worker.*"


# The header jobs/published.py adds to every task message: its publish time (seconds since the epoch). The
# oldest queued message's header tells how long it waited (jobs/metrics.py, ./invoke status).
PUBLISHED_HEADER = "tenantstack_published"


def data_volume(tenant: str) -> str:
    """The Compose volume (short name) holding the tenant's database and beat schedule."""
    return f"{_TENANT}{tenant}-data"


# A tenant's PostgreSQL database and role share one name, tenant_<t>: tenant names are a lowercase letter and up to
# 14 lowercase letters or digits, so tenant_<t> is a valid unquoted identifier (PostgreSQL folds unquoted names to
# lowercase; at most 21 of its 63 bytes) that needs no quoting anywhere, and the `tenantstack_` roles never clash.
def database_name(tenant: str) -> str:
    """The tenant's PostgreSQL database (DATABASE=postgres), owned by its role."""
    return f"tenant_{tenant}"


def database_role(tenant: str) -> str:
    """The tenant's PostgreSQL role: logs in, owns its database and nothing else."""
    return f"tenant_{tenant}"


def database_metrics_role(tenant: str) -> str:
    """The read-only role of the tenant's metrics exporter: CONNECT on the tenant's database and SELECT on its result
    table only (deployment/postgres.py; the glue's migration grants the SELECT as the table's owner). A tenant name
    has no underscore, so no tenant's own role can be spelled like it."""
    return f"{database_role(tenant)}_{_METRICS}"


def env_file_name(tenant: str) -> str:
    return f"{_TENANT}{tenant}.env"


def env_file_re() -> re.Pattern:
    """Matches a tenant env file or its committed example; group 1 is the tenant."""
    return re.compile(rf"^{_TENANT}([a-z][a-z0-9]*)\.env(\.example)?$")


def acl_channel_patterns(tenant: str, broadcast_queues=(), event_routing_keys=()) -> list[str]:
    """Pub/sub patterns the tenant's ACL user may use, from its declarations (deployment/envs.py).

    PUBLISH and SUBSCRIBE are matched against ACL patterns as globs: `<prefix>*` covers every channel
    kombu publishes to. PSUBSCRIBE is different: Redis 7.0 compares the pattern *literally* with the
    ACL's patterns, so each pattern kombu PSUBSCRIBEs must be listed exactly. kombu subscribes to
    `<prefix>/<db>.<exchange>` for a fanout exchange without routing key (the pidbox, a Broadcast()
    queue declared with routing_key="") and `<prefix>/<db>.<exchange>/<routing key, # as *>` otherwise:
    a Broadcast() queue in a Celery app gets the app's default routing key (the tenant's queue name),
    and Celery makes the event exchange `celeryev` a fanout exchange on Redis. Every pattern starts with the
    tenant's literal prefix, which holds no glob character, so none can match another tenant's channel.
    """
    p = key_prefix(tenant)
    db = BROKER_DB
    events = ["#", "worker.#", *event_routing_keys]
    patterns = [f"{p}*", f"{p}/{db}.celery.pidbox"]
    for name in broadcast_queues:
        patterns += [f"{p}/{db}.{name}", f"{p}/{db}.{name}/{queue_name(tenant)}"]
    patterns += [f"{p}/{db}.celeryev/{key.replace('#', '*')}" for key in events]
    return list(dict.fromkeys(patterns))  # once each, in order


# ---- isolation between tenants (networks, secret files) -------------------------------------------
# One Compose network per tenant: its web, worker and beat share it with Redis and nothing else, so a
# compromised tenant container cannot even open a TCP connection to another tenant's containers or to
# an operator tool. Operator services (the tools UI, later monitoring) each get a network of their own
# with Redis. Redis joins every one of them, so its service name stays `redis` (the certificate's SAN).
_OPERATOR = "ops-"
APP_SECRETS_DIR = "/run/secrets/app"  # where a tenant's secret files are mounted (read-only) in its containers
# A web container's gunicorn workers each leave a file named by their pid here once they loaded the application
# (gunicorn_conf.post_worker_init): how ops' rolling reload knows a new worker serves before an old one goes.
WEB_READY_DIR = "/tmp/gunicorn-ready"


def tenant_network(tenant: str) -> str:
    """The Compose network (short name) of one tenant's web, worker and beat, shared with Redis only."""
    return f"{_TENANT}{tenant}"


def operator_network(service: str) -> str:
    """The Compose network (short name) of one operator service (redis-commander, monitoring) with Redis."""
    return f"{_OPERATOR}{service}"


TOOLS_NETWORK = operator_network(TOOLS_SERVICE)
# Prometheus, Alertmanager, the exporters and the receiver share one network with Redis; no tenant is on it.
MONITORING_NETWORK = operator_network(MONITORING_PROFILE)


def secret_file_name(setting: str) -> str:
    """File name of a setting delivered as a file (deployment/envs.py `as_file`), e.g. redis_password."""
    return setting.lower()


def secret_file_var(setting: str) -> str:
    """The variable naming that file inside the container, e.g. REDIS_PASSWORD_FILE."""
    return f"{setting}_FILE"


# ---- Redis roles beyond the broker (REDIS_ROLES): the names their clients use (app/tenantstack/roles.py) and the
# patterns the tenant's ACL confines them to (deployment/acl.py), spelled once -------------------------------------
def cache_key_prefix(tenant: str) -> str:
    """Django's KEY_PREFIX of the cache role: Django's keys are KEY_PREFIX:version:key, `<prefix>cache:1:<key>`."""
    return f"{key_prefix(tenant)}cache"


def result_channel_pattern(tenant: str) -> str:
    """The channels the results role may SUBSCRIBE to: Celery's Redis backend publishes each result on its key,
    `<prefix>celery-task-meta-<id>` (global_keyprefix + Celery's task_keyprefix), and subscribes to it to wait."""
    return f"{key_prefix(tenant)}celery-task-meta-*"


def app_channel(tenant: str, name: str) -> str:
    """An application pub/sub channel of the pubsub role: `<prefix>app:<name>`."""
    return f"{key_prefix(tenant)}app:{name}"


def app_channel_pattern(tenant: str) -> str:
    """The channels the pubsub role may SUBSCRIBE to: every app_channel() of the tenant."""
    return app_channel(tenant, "*")
