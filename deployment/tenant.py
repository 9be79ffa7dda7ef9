"""One tenant's declarations, read once from its env file's values: project, Redis roles, queues, pools, database.

The host (compose generation, the ACL renderer, status, metrics) and the glue in the containers read the same
values through `spec()`, so a queue, a pool or a role is interpreted in one place. Cross-checks that no single
row can make (a pool consuming an undeclared queue, a queue nobody consumes) are collected with every other
problem: `problems()` returns them all, each with its fix.
"""
from dataclasses import dataclass

from . import envs, naming

ROLES = ("broker", "cache", "results", "pubsub")  # REDIS_ROLES' vocabulary; broker is always on
DEFAULT_POOL = "default"  # its service keeps the name tenant-<t>-worker
MAX_CONCURRENCY = 256  # a pool's processes, as CELERY_WORKER_CONCURRENCY's range
# Connections to Redis each process holds at most, by kind (REDIS_MAX_CONNECTIONS must cover their sum, or the cap
# in Redis' namespace, ops/deploy/connlimit.py, resets the last ones): a worker's main process keeps the consumer,
# the pidbox, the event dispatcher and the liveness PING; each pool process and each web thread publishes over one
# broker connection and one per client role (cache, results); beat keeps one broker connection.
WORKER_MAIN_CONNECTIONS = 4
WEB_PROCESSES, WEB_THREADS = 2, 4  # app/tenantstack/gunicorn_conf.py
BEAT_CONNECTIONS = 2
# The database: SQLite (embedded, the default) or PostgreSQL (DATABASE, deployment/envs.py).
SQLITE, POSTGRES = "sqlite", "postgres"
# Connections to PostgreSQL by kind (DATABASE_CONNECTION_LIMIT must cover their sum, or PostgreSQL refuses the last
# ones with "too many connections for role"): Django keeps one per thread, so one per web thread and per pool process;
# a worker's main process may open one (Celery's Django fixup), beat one (a database scheduler, the cleanup) and an
# ops command run in a container (export_db, flush_results) one. The metrics exporter is not among them: it connects
# as its own read-only role with its own limit (deployment/postgres.py METRICS_CONNECTIONS, in the server's budget).
DATABASE_EXTRA_CONNECTIONS = 2  # beat, one ops command


@dataclass(frozen=True)
class Pool:
    name: str
    queues: tuple[str, ...]
    concurrency: int

    def service(self, tenant: str) -> str:
        """tenant-<t>-worker for the default pool, tenant-<t>-worker-<pool> for any other."""
        return naming.pool_service(tenant, self.name)


@dataclass(frozen=True)
class Project:
    build_context: str  # absolute, or relative to the checkout
    django_settings: str
    celery_app: str  # module:attribute
    wsgi_app: str  # module:attribute


@dataclass(frozen=True)
class Spec:
    tenant: str
    roles: tuple[str, ...]  # always starts with "broker"
    queues: tuple[str, ...]  # the default queue first
    pools: tuple[Pool, ...]  # the default pool first
    project: Project
    database: str = SQLITE  # SQLITE or POSTGRES

    @property
    def on_postgres(self) -> bool:
        return self.database == POSTGRES

    @property
    def default_queue(self) -> str:
        return self.queues[0]

    def has(self, role: str) -> bool:
        return role in self.roles

    def queue_keys(self) -> tuple[str, ...]:
        """The Redis lists holding each queue's messages (kombu: prefix + queue name)."""
        return tuple(naming.key_prefix(self.tenant) + q for q in self.queues)

    def pool(self, name: str) -> Pool:
        return next(p for p in self.pools if p.name == name)

    def connections_needed(self) -> int:
        """The most connections its web, worker pools and beat open at once, as declared (see the constants)."""
        per_process = 1 + len([r for r in self.roles if r in ("cache", "results")])
        workers = sum(WORKER_MAIN_CONNECTIONS + p.concurrency * per_process for p in self.pools)
        return workers + WEB_PROCESSES * WEB_THREADS * per_process + BEAT_CONNECTIONS * per_process

    def database_connections_needed(self) -> int:
        """The most PostgreSQL connections its processes open at once, as declared (see DATABASE_EXTRA_CONNECTIONS)."""
        workers = sum(1 + p.concurrency for p in self.pools)
        return WEB_PROCESSES * WEB_THREADS + workers + DATABASE_EXTRA_CONNECTIONS


def _items(name: str, values: dict, problems: list[str]) -> tuple[str, ...]:
    row = envs.TENANT[name]
    found, problem = envs.items(row, values.get(name, ""))
    if problem:
        problems.append(f"{problem}: {row.fix}")
    return found


def _text(name: str, values: dict) -> str:
    return envs.value_of(envs.TENANT[name], values)


def read(tenant: str, values: dict) -> tuple[Spec | None, list[str]]:
    """(spec, []) or (None, every problem) from an env file's values (defaults for absent optional rows)."""
    problems: list[str] = []
    roles = _items("REDIS_ROLES", values, problems)
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        problems.append(f"REDIS_ROLES has unknown role {unknown[0]!r}: {envs.TENANT['REDIS_ROLES'].fix}")
    roles = ("broker", *[r for r in ROLES[1:] if r in roles])
    queues = _items("CELERY_QUEUES", values, problems) or (naming.queue_name(tenant),)
    if len(set(queues)) != len(queues):
        problems.append(f"CELERY_QUEUES names a queue twice ({','.join(queues)}): list each queue once")
    pools = _pools(tenant, values, queues, problems)
    project = Project(_text("APP_BUILD_CONTEXT", values), _text("TENANT_DJANGO_SETTINGS", values),
                      _text("TENANT_CELERY_APP", values), _text("TENANT_WSGI_APP", values))
    database = _text("DATABASE", values)
    if database not in (SQLITE, POSTGRES):  # the row's pattern says the same; never build a Spec from it
        problems.append(f"DATABASE={database!r} is not valid: {envs.TENANT['DATABASE'].fix}")
    if database == POSTGRES and values.get("DATABASE_URL"):
        problems.append("DATABASE=postgres with a DATABASE_URL: the deployment builds the connection from its parts "
                        "(the password only as a file); empty DATABASE_URL, or set DATABASE=sqlite to use the URL")
    if problems:
        return None, problems
    spec = Spec(tenant, roles, queues, tuple(pools), project, database)
    limit = envs.value_of(envs.TENANT["DATABASE_CONNECTION_LIMIT"], values)
    if spec.on_postgres and limit.isdigit() and int(limit) < spec.database_connections_needed():
        need = spec.database_connections_needed()
        return None, [f"DATABASE_CONNECTION_LIMIT={limit} is below the {need} PostgreSQL connections its web, "
                      f"{len(spec.pools)} worker pool(s), beat and an ops command open: raise it to at least "
                      f"{need}, or declare fewer processes"]
    cap = envs.value_of(envs.TENANT["REDIS_MAX_CONNECTIONS"], values)
    if cap.isdigit() and int(cap) < spec.connections_needed():
        return None, [f"REDIS_MAX_CONNECTIONS={cap} is below the {spec.connections_needed()} connections its web, "
                      f"{len(spec.pools)} worker pool(s) and beat open with roles {','.join(spec.roles)}: raise it to "
                      f"at least {spec.connections_needed()}, or declare fewer processes"]
    return spec, []


def _pools(tenant: str, values: dict, queues: tuple[str, ...], problems: list[str]) -> list[Pool]:
    """WORKER_POOLS, cross-checked with the queues (empty: one default pool on every queue)."""
    concurrency = envs.value_of(envs.TENANT["CELERY_WORKER_CONCURRENCY"], values)
    pools = []
    for item in _items("WORKER_POOLS", values, problems):
        name, consumed, count = item.split(":")
        pools.append(Pool(name, tuple(q for q in consumed.split("+") if q), int(count)))
    if not pools:
        pools = [Pool(DEFAULT_POOL, queues, int(concurrency) if concurrency.isdigit() else 1)]
    fix_pools = envs.TENANT["WORKER_POOLS"].fix
    names = [p.name for p in pools]
    if names and names[0] != DEFAULT_POOL:
        problems.append(f"WORKER_POOLS starts with pool {names[0]!r}: the first pool must be `{DEFAULT_POOL}` "
                        f"(its service keeps the name {naming.service_name(tenant, 'worker')})")
    if len(set(names)) != len(names):
        problems.append(f"WORKER_POOLS names a pool twice ({','.join(names)}): give each pool its own name")
    for pool in pools:
        if not 1 <= pool.concurrency <= MAX_CONCURRENCY:
            problems.append(f"WORKER_POOLS pool {pool.name!r} has concurrency {pool.concurrency}, out of range "
                            f"1..{MAX_CONCURRENCY}: {fix_pools}")
        stray = [q for q in pool.queues if q not in queues]
        if stray:
            problems.append(f"WORKER_POOLS pool {pool.name!r} consumes {stray[0]!r}, which CELERY_QUEUES does not "
                            f"declare: add it to CELERY_QUEUES or drop it from the pool")
    idle = [q for q in queues if not any(q in p.queues for p in pools)]
    if idle:
        problems.append(f"queue {idle[0]!r} of CELERY_QUEUES is consumed by no pool of WORKER_POOLS: its tasks would "
                        f"wait forever; add it to a pool")
    return pools


def spec(tenant: str, values: dict) -> Spec:
    """The tenant's declarations; ValueError with every problem in one line when they do not hold."""
    found, problems = read(tenant, values)
    if problems:
        raise ValueError(f"tenant {tenant}: " + "; ".join(problems))
    return found
