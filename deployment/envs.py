"""The env files, as tables: every setting's name, default, validation and comment, in one place.

TENANT_SETTINGS drives the generated envs/tenant-<name>.env, the committed *.env.example files
(tests/test_model.py proves they are exactly what `render_example` writes) and the validation on both
sides: ops/config/tenants.py on the host and tenantstack/env.py in the containers call `problems()`/`integer()`.
REDIS_SETTINGS does the same for envs/redis.env, MONITORING_SETTINGS for envs/monitoring.env and BACKUP_SETTINGS for
envs/backup.env (the backup policy). To add a tenant setting, add one row here.
A row with `as_file` (every secret) never reaches a container's environment: ops/secrets/tenant_files.py
writes it to its own read-only file and the app reads NAME_FILE (tenantstack/env.py).
"""
import re
import shlex
from dataclasses import dataclass

from . import naming
from .durations import DURATION_HELP, parse_duration

PLACEHOLDER = "change-me"  # the value of every secret in a committed example; never valid in a real file


@dataclass(frozen=True)
class Setting:
    name: str
    comment: str
    default: str = ""  # the example's value; secrets have PLACEHOLDER there and a generated value in real files
    secret: bool = False
    required: bool = True
    low: int | None = None  # integer settings: the accepted range
    high: int | None = None
    fix: str = ""  # how to correct a bad value (added to the one-line error)
    # Delivered to the containers as a read-only file (NAME_FILE names it), never as an environment
    # variable: true for every secret, and for a value that may embed one (a database URL's password).
    in_file: bool = False
    decimal: bool = False  # a number with a fraction (CPUs), validated against low..high
    item: str = ""  # list settings: a regex every comma-separated item must match in full
    pattern: str = ""  # single-value text settings: a regex the whole value must match
    duration: bool = False  # a duration like 6h (deployment/durations.py)
    # A command line, split like a shell would (shlex) but run without one; `{word}` tokens must be among these.
    command_tokens: tuple[str, ...] = ()
    # A secret row newer than the env files already written (an upgrade): `up` runs init, which generates it into
    # them. A missing older secret is the operator's slip, refused in one line instead (secrets.check_all).
    generated_on_upgrade: bool = False

    @property
    def is_list(self) -> bool:
        return bool(self.item)

    @property
    def is_integer(self) -> bool:
        return self.low is not None and not self.decimal

    @property
    def as_file(self) -> bool:
        """Reaches the containers only as a file under naming.APP_SECRETS_DIR (`docker inspect` never shows it)."""
        return self.secret or self.in_file


_SECONDS = "set it to a whole number of seconds"
TENANT_SETTINGS: tuple[Setting, ...] = (
    Setting("TENANT", "The tenant's short name: its Redis user, key prefix, queue and services derive from it.",
            fix=f"use {naming.TENANT_NAME_RULE}"),
    Setting("WEB_PORT", "Host port of the tenant's web on 127.0.0.1 (inside the instance's port block).",
            low=1, high=65535, fix="set it to a free port of the instance's block"),
    Setting("DJANGO_SECRET_KEY", "Django's signing key.", PLACEHOLDER, secret=True),
    Setting("DJANGO_ADMIN_PASSWORD", "Password of the Django admin user `admin`.", PLACEHOLDER, secret=True,
            required=False),
    Setting("REDIS_PASSWORD", "Password of the tenant's Redis ACL user tenant-<name>.", PLACEHOLDER, secret=True),
    Setting("CELERY_TASK_TIME_LIMIT", "Longest task may run this long (hard limit); the soft limit is derived.",
            "300", low=1, high=7 * 86400, fix=f"{_SECONDS}, e.g. 300"),
    Setting("CELERY_VISIBILITY_TIMEOUT", "A task held by a worker that died comes back after this many seconds "
            "(keep it well above the time limit; see README).", "3600", low=1, high=30 * 86400,
            fix=f"{_SECONDS}, e.g. 3600"),
    Setting("CELERY_WORKER_CONCURRENCY", "Worker processes of the tenant's Celery worker.", "2", low=1, high=256,
            fix="set it to the number of worker processes, e.g. 2"),
    Setting("CELERY_WORKER_PREFETCH_MULTIPLIER", "Messages reserved per worker process: with late acks, 1 keeps a long "
            "task from holding others.", "1", low=1, high=1000, fix="set it to messages reserved per process, e.g. 1"),
    Setting("DATABASE_URL", "Empty: SQLite on the tenant's volume. Or postgres://user:pass@host/db for PostgreSQL.",
            required=False, in_file=True),
    # PostgreSQL per tenant (README, issue 21): DATABASE=postgres gives the tenant a database and a role of its own on
    # the deployment's server (deployment/postgres.py renders both). The glue builds the connection from parts
    # (naming.py's host, database and role, this password's file, sslmode=verify-full against the deployment's CA),
    # never from a URL: a URL in an env file would carry the password. So with postgres, DATABASE_URL stays empty.
    Setting("DATABASE", "The tenant's database: sqlite (embedded, on the tenant's volume) or postgres (a database "
            "and role of its own on the deployment's PostgreSQL).", "sqlite", required=False,
            pattern=r"sqlite|postgres", fix="set it to sqlite or postgres"),
    # PostgreSQL caps connections per role natively (CONNECTION LIMIT): the renderer puts this on the tenant's role,
    # and `up` refuses when the tenants' limits with ops' and the exporter's exceed max_connections.
    Setting("DATABASE_CONNECTION_LIMIT", "PostgreSQL: most connections the tenant's role may hold at once (its "
            "web, workers, beat and ops commands together).", "20", required=False, low=1, high=1000,
            fix="set it to a whole number of connections, e.g. 20"),
    Setting("DATABASE_STATEMENT_TIMEOUT", "PostgreSQL: a statement of the tenant's running longer than this many "
            "seconds is cancelled (the role's statement_timeout).", "30", required=False, low=1, high=86400,
            fix=f"{_SECONDS}, e.g. 30"),
    # Generated for every tenant (SQLite ones too), so switching to postgres needs no new secret; delivered as a
    # file only, and the server gets only its SCRAM verifier (deployment/postgres.py), never the password.
    Setting("DATABASE_PASSWORD", "Password of the tenant's PostgreSQL role (used only with DATABASE=postgres).",
            PLACEHOLDER, secret=True, generated_on_upgrade=True),
    # Resource limits of the tenant's containers (Compose mem_limit, cpus, pids_limit). The defaults let two
    # tenants and Redis share 2 cores and a few GiB: CPU limits are caps, not reservations, so they may add
    # up to more than the cores; memory limits add up to 3.5 GiB for two tenants (Redis: compose.yaml).
    # Optional: a file written before these rows existed gets the defaults.
    *(Setting(f"{role.upper()}_MEMORY_MB", f"Memory limit of the tenant's {role} container, in MB (no swap beyond it).",
              mb, required=False, low=64, high=1024 * 1024, fix=f"set it to a whole number of MB, e.g. {mb}")
      for role, mb in (("web", "512"), ("worker", "1024"), ("beat", "256"))),
    *(Setting(f"{role.upper()}_CPUS", f"CPU limit of the tenant's {role} container, in cores (a cap, not a reserve).",
              cpus, required=False, low=0.01, high=256, decimal=True, fix=f"set it to a number of cores, e.g. {cpus}")
      for role, cpus in (("web", "1.0"), ("worker", "1.5"), ("beat", "0.5"))),
    Setting("REDIS_MAX_CONNECTIONS", "Most connections the tenant's containers may hold to Redis at once (Redis 7.0 "
            "has no per-user limit: ./invoke caps it in Redis' network namespace). Keep the sum over tenants below "
            "Redis' maxclients.", "100", required=False, low=10, high=10000,
            fix="set it to a whole number of connections, e.g. 100"),
    Setting("PIDS_LIMIT", "Most processes and threads each of the tenant's containers may run (stops a fork bomb).",
            "256", required=False, low=32, high=65536, fix="set it to a whole number of processes, e.g. 256"),
    # Redis 7.0 compares a PSUBSCRIBE pattern literally with the ACL's channel patterns, so every pattern
    # kombu subscribes to must be listed exactly (deployment/naming.py acl_channel_patterns): these two
    # declare the ones beyond the pidbox and the default event receivers. Items become ACL patterns, hence
    # the strict character sets (no spaces, no glob characters in names).
    # The tenant's own project (README, "Bring your own project"): a folder with its code and a Dockerfile that
    # starts FROM the app base image; its Django settings, Celery app and WSGI app, which the glue package
    # (app/tenantstack) wraps. The defaults are the example project, built the same way.
    Setting("APP_BUILD_CONTEXT", "Folder with the tenant's project and its Dockerfile (FROM the app base image): "
            "absolute, or relative to the checkout.", "app/example", required=False,
            pattern=r"[A-Za-z0-9_./@+-]{1,200}", fix="set it to a folder holding the project's Dockerfile, "
            "e.g. APP_BUILD_CONTEXT=/srv/projects/shop"),
    Setting("TENANT_DJANGO_SETTINGS", "The project's Django settings module; the glue imports it, then overrides "
            "what the deployment owns.", "example.settings", required=False, pattern=r"[A-Za-z_][A-Za-z0-9_.]{0,199}",
            fix="set it to a dotted module path, e.g. TENANT_DJANGO_SETTINGS=config.settings.production"),
    Setting("TENANT_CELERY_APP", "The project's Celery app as module:attribute.", "example.celery:app",
            required=False, pattern=r"[A-Za-z_][A-Za-z0-9_.]{0,199}:[A-Za-z_][A-Za-z0-9_]{0,99}",
            fix="set it to module:attribute, e.g. TENANT_CELERY_APP=config.celery_app:app"),
    Setting("TENANT_WSGI_APP", "The project's WSGI application as module:attribute.", "example.wsgi:application",
            required=False, pattern=r"[A-Za-z_][A-Za-z0-9_.]{0,199}:[A-Za-z_][A-Za-z0-9_]{0,99}",
            fix="set it to module:attribute, e.g. TENANT_WSGI_APP=config.wsgi:application"),
    # What the tenant may do on Redis beyond Celery's broker: each role adds an exact command set to the tenant's
    # ACL users (deployment/acl.py ROLE_COMMANDS) and the glue configures the client for it (tenantstack/roles.py).
    Setting("REDIS_ROLES", "Comma-separated Redis roles: broker (always), cache (Django's RedisCache, sessions), "
            "results (Celery's Redis result backend), pubsub (PUBLISH/SUBSCRIBE on <prefix>app:*).", "broker",
            required=False, item=r"broker|cache|results|pubsub",
            fix="list roles among broker, cache, results and pubsub, e.g. REDIS_ROLES=broker,cache,results"),
    # Queues and worker pools (deployment/tenant.py reads and cross-checks them). Empty: the one queue tenant-<name>
    # and one pool `default` (service tenant-<name>-worker, CELERY_WORKER_CONCURRENCY processes) consuming it.
    Setting("CELERY_QUEUES", "Comma-separated Celery queues of the tenant, the default queue first (empty: "
            "tenant-<name>).", required=False, item=r"[a-z0-9][a-z0-9._-]{0,63}",
            fix="list queue names of lowercase letters, digits, '.', '_' or '-', e.g. CELERY_QUEUES=default,reports"),
    Setting("WORKER_POOLS", "Comma-separated worker pools as name:queue+queue:concurrency; pool `default` is service "
            "tenant-<name>-worker, any other tenant-<name>-worker-<pool> (empty: one default pool on every queue).",
            required=False, item=r"[a-z][a-z0-9]{0,14}:[a-z0-9][a-z0-9._+-]{0,200}:[0-9]{1,3}",
            fix="list pools as name:queue+queue:concurrency, e.g. WORKER_POOLS=default:default:2,reports:reports:1"),
    Setting("CELERY_BROADCAST_QUEUES", "Comma-separated names of the Broadcast() queues the tenant's workers consume "
            "(empty: none). Each may then be PSUBSCRIBEd as <prefix>/0.<name>.", required=False,
            item=r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}",
            fix="list Broadcast() queue names of letters, digits, '.', '_' or '-', "
                "e.g. CELERY_BROADCAST_QUEUES=reload"),
    Setting("CELERY_EVENT_ROUTING_KEYS", "Comma-separated routing keys of event receivers beyond `#` and `worker.#` "
            "(empty: none), e.g. task.#", required=False, item=r"[A-Za-z0-9_#*-]{1,32}(\.[A-Za-z0-9_#*-]{1,32}){0,7}",
            fix="list topic routing keys of words (letters, digits, '_', '-', '*' or '#') joined by '.', e.g. task.#"),
)
TENANT = {s.name: s for s in TENANT_SETTINGS}

REDIS_SETTINGS: tuple[Setting, ...] = (
    Setting("REDIS_PASSWORD", "Password of the `default` user (requirepass): operators and ops tasks only.",
            PLACEHOLDER, secret=True),
    Setting("REDIS_HEALTH_PASSWORD", "ACL user `health`: may only PING; used by the container healthcheck.",
            PLACEHOLDER, secret=True),
    Setting("REDIS_COMMANDER_PASSWORD", "ACL user `commander`: read-only, for redis-commander (tools profile).",
            PLACEHOLDER, secret=True),
    Setting("REDIS_CONFIG_COMMAND", "Generated name of the renamed CONFIG command.", PLACEHOLDER, secret=True),
    Setting("REDIS_KEYS_COMMAND", "Generated name of the renamed KEYS command.", PLACEHOLDER, secret=True),
    Setting("REDIS_SHUTDOWN_COMMAND", "Generated name of the renamed SHUTDOWN command.", PLACEHOLDER, secret=True),
    Setting("COMMANDER_HTTP_USER", "Login of the redis-commander web UI (`./invoke tools-login` shows it).",
            PLACEHOLDER, secret=True),
    Setting("COMMANDER_HTTP_PASSWORD", "Password of the redis-commander web UI.", PLACEHOLDER, secret=True),
    # One secret for the monitoring profile's Redis users: `exporter` (redis-exporter) and each tenant's
    # `tenant-<name>-metrics` get a password derived from it (deployment/acl.py monitoring_password), so
    # adding a tenant needs no new row and no tenant ever holds a monitoring password.
    Setting("REDIS_MONITORING_SECRET", "Key from which the monitoring users' Redis passwords are derived.",
            PLACEHOLDER, secret=True),
    # PostgreSQL (issue 21): ops' role over TLS (dumps, restores, checks; a member of each tenant's role, never a
    # superuser). The exporter's role needs no row: its password derives from REDIS_MONITORING_SECRET.
    Setting("POSTGRES_OPS_PASSWORD", "Password of PostgreSQL's ops role tenantstack_ops (dumps, restores, checks).",
            PLACEHOLDER, secret=True),
    # The one memory budget of Redis (deployment/acl.py renders `maxmemory` from it into the auth file).
    # 1024 MB leaves a 24 GiB / 2-core host plenty for two tenants' stacks; Redis' container needs more
    # than this (fork copy-on-write for BGSAVE/AOF rewrite, Lua, client buffers): see README, Redis.
    Setting("REDIS_MAXMEMORY_MB", "Redis' data budget in MB (maxmemory); writes are refused beyond it (noeviction).",
            "1024", required=False, low=64, high=1024 * 1024, fix="set it to a number of megabytes, e.g. 1024"),
)
REDIS = {s.name: s for s in REDIS_SETTINGS}

# envs/monitoring.env: the one file an operator edits to tune monitoring. Prometheus' alert rules
# (monitoring/prometheus/rules/alerts.yml), its intervals and retention, Alertmanager's grouping and
# `./invoke status`'s red marks are all rendered from these rows (ops/monitor/config.py), so a threshold
# is written once. No secrets. Durations are whole seconds.
_S = "set it to a whole number of seconds"
MONITORING_SETTINGS: tuple[Setting, ...] = (
    Setting("ALERT_REDIS_MEMORY_PERCENT", "Alert when Redis' used memory exceeds this % of maxmemory (writes fail at "
            "100 %).", "80", low=1, high=100, fix="set it to a percentage, e.g. 80"),
    Setting("ALERT_REDIS_CLIENTS", "Alert when Redis has more connected clients than this (maxclients is shared).",
            "1000", low=1, high=1_000_000, fix="set it to a number of connections, e.g. 1000"),
    Setting("ALERT_QUEUE_DEPTH", "Alert when a tenant's queue holds more messages than this.", "500", low=1,
            high=100_000_000, fix="set it to a number of messages, e.g. 500"),
    Setting("ALERT_OLDEST_TASK_SECONDS", "Alert when a tenant's oldest queued task waited longer than this.", "600",
            low=1, high=30 * 86400, fix=f"{_S}, e.g. 600"),
    Setting("ALERT_FAILURE_PERCENT", "Alert when more than this % of a tenant's finished tasks failed over 15 min.",
            "10", low=1, high=100, fix="set it to a percentage, e.g. 10"),
    Setting("ALERT_FAILURE_MIN_TASKS", "... but only when at least this many tasks finished in those 15 min.", "20",
            low=1, high=1_000_000, fix="set it to a number of tasks, e.g. 20"),
    Setting("ALERT_BEAT_STALE_SECONDS", "Alert when a tenant's beat has not ticked for this long.", "120", low=10,
            high=86400, fix=f"{_S}, e.g. 120"),
    # PostgreSQL tenants (issue 21): optional, so a monitoring.env written before them keeps working with the default.
    Setting("ALERT_DATABASE_CONNECTIONS_PERCENT", "Alert when a PostgreSQL tenant's role holds more than this % of its "
            "DATABASE_CONNECTION_LIMIT.", "80", required=False, low=1, high=100,
            fix="set it to a percentage, e.g. 80"),
    Setting("ALERT_DATABASE_SIZE_MB", "Alert when a PostgreSQL tenant's database grows beyond this many MB.", "10240",
            required=False, low=1, high=100 * 1024 * 1024, fix="set it to a whole number of MB, e.g. 10240"),
    # BackupMissing's threshold is no row here: it follows the schedule (BACKUP_EVERY, envs/backup.env), see
    # backup_alert_seconds. A monitoring.env written before still holding ALERT_BACKUP_MAX_AGE_HOURS is read
    # without error; that line is ignored (README, "Backup strategy").
    Setting("ALERT_CERT_DAYS", "Alert when a certificate of the deployment expires within this many days.", "30",
            low=1, high=3650, fix="set it to a whole number of days, e.g. 30"),
    Setting("ALERT_FOR_SECONDS", "How long a condition must hold before its alert fires (Redis down: a fifth).",
            "300", low=0, high=86400, fix=f"{_S}, e.g. 300"),
    Setting("PROMETHEUS_SCRAPE_SECONDS", "How often Prometheus scrapes every target.", "15", low=1, high=3600,
            fix=f"{_S}, e.g. 15"),
    Setting("PROMETHEUS_EVALUATION_SECONDS", "How often Prometheus evaluates the alert rules.", "15", low=1,
            high=3600, fix=f"{_S}, e.g. 15"),
    Setting("PROMETHEUS_RETENTION_DAYS", "Days of metrics Prometheus keeps on its volume.", "15", low=1, high=3650,
            fix="set it to a whole number of days, e.g. 15"),
    Setting("ALERTMANAGER_GROUP_WAIT_SECONDS", "Alertmanager waits this long to batch a new group's alerts.", "30",
            low=0, high=3600, fix=f"{_S}, e.g. 30"),
    Setting("ALERTMANAGER_REPEAT_HOURS", "A still-firing alert is sent again after this many hours.", "4", low=1,
            high=24 * 30, fix="set it to a whole number of hours, e.g. 4"),
)
MONITORING = {s.name: s for s in MONITORING_SETTINGS}
MONITORING_HEADER = ("Monitoring: alert thresholds and Prometheus' intervals, the one file to edit. `./invoke up "
                     "--monitoring`\nrenders the alert rules, prometheus.yml and alertmanager.yml from it; "
                     "`./invoke status` marks red\nwhat would alert. Rows: deployment/envs.py. No secrets.")

# envs/backup.env: the backup policy, the one file to edit for it. `./invoke backup-schedule` (a loop, or --once
# from cron) reads it on every run; `./invoke backup` keeps BACKUP_KEEP_WHOLE by default; BackupMissing's threshold
# is rendered from BACKUP_EVERY (backup_alert_seconds). No secrets: the copy command is the operator's, and a
# secret it needs (an rclone or ssh key) stays in that tool's own configuration.
BACKUP_COPY_TOKENS = ("{path}", "{name}")
BACKUP_SETTINGS: tuple[Setting, ...] = (
    Setting("BACKUP_EVERY", "How often `./invoke backup-schedule` takes the backups (with --once from cron: the "
            "crontab's interval). BackupMissing fires when the newest verified backup is older than twice this "
            "plus one hour.", "24h", required=False, duration=True, fix=f"use {DURATION_HELP}"),
    Setting("BACKUP_KEEP_WHOLE", "Whole backups (backups/<stamp>/) to keep, the newest; an older one is removed only "
            "once that many newer ones verified.", "7", required=False, low=1,
            high=10_000, fix="set it to a whole number of backups, at least 1, e.g. 7"),
    Setting("BACKUP_TENANTS", "Comma-separated tenants that also get a backup of their own on each run "
            "(backups/tenant-<t>/<stamp>/), or `all`; empty: none (whole backups hold every tenant).", "",
            required=False, item=r"all|[a-z][a-z0-9]{0,14}", fix=f"list tenant names ({naming.TENANT_NAME_RULE}) "
            "or `all`, e.g. BACKUP_TENANTS=a,b"),
    Setting("BACKUP_KEEP_TENANT", "One-tenant backups to keep per tenant (backups/tenant-<t>/), the newest. "
            "backups/archives/ (removed tenants) is never pruned.", "7", required=False, low=1,
            high=10_000, fix="set it to a whole number of backups, at least 1, e.g. 7"),
    Setting("BACKUP_COPY_COMMAND", "Run after each verified backup to copy it elsewhere (empty: no copy). Split "
            "into words like a shell would, run without one; {path} becomes the backup's folder, {name} its name "
            "under backups/ (e.g. 20260101T020000Z or tenant-b/20260101T020000Z). "
            "E.g. rsync -a {path} /mnt/offsite/ or rclone copy {path} remote:bk/{name}", "", required=False,
            command_tokens=BACKUP_COPY_TOKENS,
            fix="write it as a command with {path} or {name} where the backup goes, quoting words with spaces"),
    Setting("BACKUP_COPY_TIMEOUT_SECONDS", "The copy command is stopped (and the copy reported failed) after this "
            "many seconds.", "3600", required=False, low=1, high=7 * 86400, fix=f"{_SECONDS}, e.g. 3600"),
)
BACKUP = {s.name: s for s in BACKUP_SETTINGS}
BACKUP_HEADER = ("Backup policy: schedule, retention and the off-host copy, the one file to edit. `./invoke "
                 "backup-schedule`\nreads it on every run; `./invoke up --monitoring` renders BackupMissing's "
                 "threshold from BACKUP_EVERY.\nRows: deployment/envs.py. No secrets.")
BACKUP_ALERT_MARGIN_SECONDS = 3600  # a run's own duration and a late start: one missed run never alerts, two do


def backup_alert_seconds(every_seconds: int) -> int:
    """BackupMissing's threshold: two intervals and a margin, so one missed run is tolerated and the second alerts."""
    return 2 * every_seconds + BACKUP_ALERT_MARGIN_SECONDS


TENANT_HEADER = ("Tenant {name}: the source of its web, worker and beat settings. `./invoke up` derives from it the\n"
                 "containers' env file (no secrets) and one read-only file per secret (secrets/tenants/{name}/).\n"
                 "Generated by `./invoke init` / `./invoke tenant-add` from the table in deployment/envs.py; "
                 "never commit the real file.")
REDIS_HEADER = ("Redis and operator secrets. `./invoke init` writes envs/redis.env with generated values;\n"
                "the rows come from deployment/envs.py. Never commit the real file.")


def tenant_values(name: str, web_port: int, secret=lambda key: PLACEHOLDER) -> dict[str, str]:
    """A tenant env file's values in table order; `secret(key)` fills every secret (the placeholder by default)."""
    fixed = {"TENANT": name, "WEB_PORT": str(web_port)}
    return {s.name: secret(s.name) if s.secret else fixed.get(s.name, s.default) for s in TENANT_SETTINGS}


def redis_values(secret=lambda key: PLACEHOLDER) -> dict[str, str]:
    return {s.name: secret(s.name) if s.secret else s.default for s in REDIS_SETTINGS}


def render(table: tuple[Setting, ...], values: dict[str, str], header: str) -> str:
    """An env file: the header, then each setting's comment and `NAME=value` (keys not in the table last)."""
    lines = [f"# {line}" for line in header.splitlines()]
    known = {s.name for s in table}
    for s in table:
        if s.name in values:
            lines += [f"# {s.comment}", f"{s.name}={values[s.name]}"]
    lines += [f"{k}={v}" for k, v in values.items() if k not in known]
    return "\n".join(lines) + "\n"


def render_tenant_example(name: str, example_port: int) -> str:
    return render(TENANT_SETTINGS, tenant_values(name, example_port), TENANT_HEADER.format(name=name))


def render_redis_example() -> str:
    return render(REDIS_SETTINGS, redis_values(), REDIS_HEADER)


def monitoring_values() -> dict[str, str]:
    return {s.name: s.default for s in MONITORING_SETTINGS}


def render_monitoring_example() -> str:
    return render(MONITORING_SETTINGS, monitoring_values(), MONITORING_HEADER)


def backup_values() -> dict[str, str]:
    return {s.name: s.default for s in BACKUP_SETTINGS}


def render_backup_example() -> str:
    return render(BACKUP_SETTINGS, backup_values(), BACKUP_HEADER)


def integer(setting: Setting, raw: str) -> tuple[int | None, str | None]:
    """(value, None) or (None, problem) for an integer setting; the problem names the value, not the file."""
    try:
        number = int(raw)
    except ValueError:
        return None, f"{setting.name}={raw!r} is not a whole number"
    if not setting.low <= number <= setting.high:
        return None, f"{setting.name}={number} is out of range {setting.low}..{setting.high}"
    return number, None


def number(setting: Setting, raw: str) -> tuple[float | None, str | None]:
    """(value, None) or (None, problem) for a decimal setting (CPUs); the problem names the value, not the file."""
    try:
        value = float(raw)
    except ValueError:
        return None, f"{setting.name}={raw!r} is not a number"
    if not setting.low <= value <= setting.high:  # also refuses nan and inf
        return None, f"{setting.name}={raw} is out of range {setting.low:g}..{setting.high:g}"
    return value, None


def value_of(setting: Setting, values: dict[str, str]) -> str:
    """The setting's value in an env file, its default when absent or empty (optional rows added later)."""
    return values.get(setting.name) or setting.default


def items(setting: Setting, raw: str) -> tuple[tuple[str, ...], str | None]:
    """(items, None) or ((), problem) for a comma-separated list setting; empty items are ignored."""
    values = tuple(v.strip() for v in (raw or "").split(",") if v.strip())
    bad = [v for v in values if not re.fullmatch(setting.item, v)]
    if bad:
        return (), f"{setting.name} has invalid item {bad[0]!r}"
    return values, None


def _value_problem(s: Setting, raw: str) -> str | None:
    """What is wrong with one non-empty value by its row's kind (number, list, pattern), or None."""
    if s.is_integer or s.decimal:
        return (integer if s.is_integer else number)(s, raw)[1]
    if s.duration:
        return duration_problem(s, raw)
    if s.command_tokens:
        return command_problem(s, raw)
    if s.is_list:
        return items(s, raw)[1]
    if s.pattern and not re.fullmatch(s.pattern, raw):
        return f"{s.name}={raw!r} is not valid"
    return None


def duration_problem(setting: Setting, raw: str) -> str | None:
    try:
        parse_duration(raw)
    except ValueError:
        return f"{setting.name}={raw!r} is not a duration"
    return None


def command_problem(setting: Setting, raw: str) -> str | None:
    """What is wrong with a command-line setting: unbalanced quotes, or a `{word}` it does not substitute."""
    try:
        words = shlex.split(raw)
    except ValueError as exc:
        return f"{setting.name} does not split into words ({exc})"
    unknown = sorted({t for w in words for t in re.findall(r"\{[A-Za-z_]*\}", w)} - set(setting.command_tokens))
    if unknown:
        return f"{setting.name} uses {', '.join(unknown)}, which is not substituted"
    return None


def problems(table: tuple[Setting, ...], values: dict[str, str]) -> list[str]:
    """Every problem with a whole env file, missing and placeholder values grouped, each with its fix."""
    missing = [s.name for s in table if s.required and not values.get(s.name)]
    placeholders = [s.name for s in table if values.get(s.name) == PLACEHOLDER]
    out = []
    if missing:
        out.append(f"missing {', '.join(missing)}")
    if placeholders:
        out.append(f"{', '.join(placeholders)} still at the example value '{PLACEHOLDER}'")
    if out:
        out[-1] += ": run `./invoke init` to generate real values"
    for s in table:
        raw = values.get(s.name, "")
        problem = _value_problem(s, raw) if raw and s.name not in missing else None
        if problem:
            out.append(f"{problem}: {s.fix}")
    if table is TENANT_SETTINGS and values.get("TENANT") and not naming.is_valid_tenant_name(values["TENANT"]):
        out.append(f"TENANT={values['TENANT']!r} is not a valid tenant name: {TENANT['TENANT'].fix}")
    return out
