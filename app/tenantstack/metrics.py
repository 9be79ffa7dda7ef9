"""The tenant's metrics exporter: Compose service tenant-<name>-metrics (monitoring profile), run by Prometheus.

    python -m tenantstack.metrics            serve GET /metrics on naming.TENANT_METRICS_CONTAINER_PORT (the
                                             entrypoint's `metrics` role)
    python -m tenantstack.metrics --check    the healthcheck: /metrics answers
    python -m tenantstack.metrics --summary  one JSON object about the tenant's database (what `./invoke status`
                                             shows)

It runs the base app image (the glue and the model, no project code) on the monitoring network only, with the
tenant's volume mounted read-only and none of the tenant's own secrets: it reaches Redis as the tenant's metrics
user (deployment/acl.py metrics_rule: LLEN/LINDEX/HLEN on exactly the lists of the tenant's declared queues and its
unacked hash, PSUBSCRIBE to exactly its workers' events). Nothing here is on a task's hot path: it reads what the
stack writes anyway.

Environment (Compose sets it: ops/deploy/compose.py metrics_service): TENANT; TENANT_QUEUES, the tenant's
CELERY_QUEUES as a comma list, default queue first (absent or empty: the one queue naming.queue_name(tenant));
TENANT_RESULTS_IN_REDIS=1 when the tenant declares the `results` Redis role; METRICS_PASSWORD_FILE;
TENANT_DATABASE (sqlite, the default, or postgres) and, on PostgreSQL, METRICS_POSTGRES_PASSWORD_FILE.

A PostgreSQL tenant's database is read as its metrics role tenant_<t>_metrics (deployment/postgres.py: read-only
transactions, CONNECT on the tenant's database only, SELECT on the result table only, granted by the glue's migration
tenantstack/migrations/0001), over ops' PostgreSQL network with TLS verify-full, one connection per scrape. Its
password is derived like the Redis one (ops writes it; no tenant secret here).

  tenantstack_queue_depth{queue}            LLEN of each of the tenant's queues (kombu's list <prefix><queue>)
  tenantstack_oldest_queued_task_age_seconds{queue}
                                            now - the publish-time header (tenantstack/published.py) of the
                                            message at that queue's oldest end (LINDEX -1); 0 when empty, NaN if
                                            unknown (a message without the header)
  tenantstack_unacked_messages              HLEN of kombu's unacked hash (delivered, not yet acknowledged): one
                                            hash per tenant, whichever queue the message came from
  tenantstack_workers_alive                 workers (of every pool) whose worker-heartbeat (Celery sends one every
                                            2 s) arrived within HEARTBEAT_WINDOW, through one PSUBSCRIBE
  tenantstack_tasks_finished_total{state}   succeeded / failed / retried, counted from the result database by a
                                            date_done watermark (django-celery-results updates date_done on
                                            every state change), since this exporter started
  tenantstack_task_runtime_seconds          histogram of date_done - date_created of the tasks counted above
                                            (with track_started the row is created when the task starts)
  tenantstack_result_rows                   rows in the result table (counted when tasks finished, else once a
                                            minute: a full scan on SQLite)
  tenantstack_results_in_redis              1 when the tenant's results live in Redis (TENANT_RESULTS_IN_REDIS=1):
                                            then the three result-table metrics above are not exported at all
  tenantstack_beat_heartbeat_age_seconds    age of DATA_DIR/beat.heartbeat (touched by beat on every tick)
  tenantstack_database_bytes                size of the SQLite database and its WAL (SQLite tenants)
  tenantstack_database_size_bytes           pg_database_size of the tenant's database (PostgreSQL tenants)
  tenantstack_database_connections          the tenant's role's sessions (pg_stat_activity; PostgreSQL tenants)
  tenantstack_database_connection_limit     the tenant's role's CONNECTION LIMIT (rolconnlimit; PostgreSQL tenants)
  tenantstack_metrics_redis_up / _database_up  whether this exporter could read Redis (every key above; a refused
                                            queue reads NaN) / the database
Every series carries {tenant}; the per-queue ones carry {tenant, queue} too.

A tenant whose results live in Redis (REDIS_ROLES contains results: Celery's Redis result backend) writes no row
to the result table, and this exporter cannot read the result keys (its ACL allows none of them). Without
TENANT_RESULTS_IN_REDIS=1 it cannot know: the result-table metrics then simply stay at zero (no finished task,
no runtime, no row; or the database reads as down if the project has no result table), which says nothing about
the tenant's tasks. With it they are left out rather than exported
as a misleading 0, so TenantTaskFailureRatioHigh cannot fire for that tenant: its failures are in its own
results (or its worker logs).
What it can miss: a task that fails and is retried between two scrapes counts once, in its last state; rows
deleted before a scrape (flush-results' cutoff is days) and tasks that store no result are not counted; priority
sub-queues
(kombu's <queue>\x06\x16<n>) are not counted.
"""
import argparse
import datetime as dt
import json
import math
import os
import sqlite3
import sys
import threading
import time
import urllib.request
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from deployment import envs, naming
from deployment.messages import ALIVE_EVENTS, GONE_EVENT, event_of, published_at
from tenantstack.healthcheck import HEARTBEAT_FILE  # the file beat touches: one owner

PORT = naming.TENANT_METRICS_CONTAINER_PORT
HEARTBEAT_WINDOW = 10.0  # seconds: five of Celery's 2 s worker heartbeats missed means the worker is gone
ROWS_EVERY = 60.0  # seconds between COUNT(*)s of the result table (a full scan on SQLite)
RUNTIME_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)
STATES = {"SUCCESS": "succeeded", "FAILURE": "failed", "RETRY": "retried"}
RESULT_TABLE = "django_celery_results_taskresult"
FINISHED = "status IN ('SUCCESS', 'FAILURE', 'RETRY')"
# The finished rows after the watermark, oldest first. On PostgreSQL the times come back as text in SQLite's
# spelling (UTC, microseconds), so the watermark and its comparisons are the same on both.
_UTC_TEXT = "to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')"
FINISHED_QUERY = {
    "sqlite": (f"SELECT task_id, status, date_created, date_done FROM {RESULT_TABLE} "  # noqa: S608 - constants
               f"WHERE date_done >= ? AND {FINISHED} ORDER BY date_done"),
    "postgres": (f"SELECT task_id, status, {_UTC_TEXT.format('date_created')}, {_UTC_TEXT.format('date_done')} "
                 f"FROM {RESULT_TABLE} WHERE date_done >= (%s::timestamp AT TIME ZONE 'UTC') AND {FINISHED} "  # noqa: S608
                 "ORDER BY date_done"),
}
SQLITE, POSTGRES = "sqlite", "postgres"  # TENANT_DATABASE (deployment/tenant.py's spellings)
DB_FILE = "db.sqlite3"
RECONNECT_AFTER = 2.0  # seconds before the event listener reconnects after an error


def _setting(name: str, default: str = "") -> str:
    value = os.environ.get(name, default)
    if not value:
        sys.exit(f"config error: {name} is not set: run the metrics exporter through ./invoke up --monitoring")
    return value


class Source:
    """Where everything is read from: the tenant's Redis keys (as its metrics user) and its data folder.

    In its container everything has a default (Compose sets TENANT and METRICS_PASSWORD_FILE); the app's
    REDIS_HOST, REDIS_PORT and TLS_*_FILE variables point it elsewhere (the fast tests do)."""

    def __init__(self):
        self.tenant = _setting("TENANT")
        if not naming.is_valid_tenant_name(self.tenant):
            sys.exit(f"config error: TENANT={self.tenant!r} is not a valid tenant name: {naming.TENANT_NAME_RULE}")
        self.data_dir = Path(_setting("DATA_DIR", "/data"))
        # The tenant's queues as its env file declares them (CELERY_QUEUES, passed by Compose), validated like the
        # env file: each becomes a key and a label value, so nothing outside the declared spelling gets through.
        queues, problem = envs.items(envs.TENANT["CELERY_QUEUES"], os.environ.get("TENANT_QUEUES", ""))
        if problem:
            sys.exit(f"config error: TENANT_QUEUES: {problem}: {envs.TENANT['CELERY_QUEUES'].fix}")
        self.queues = tuple(dict.fromkeys(queues)) or (naming.queue_name(self.tenant),)
        self.results_in_redis = os.environ.get("TENANT_RESULTS_IN_REDIS", "") == "1"
        self._password_file = Path(os.environ.get("METRICS_PASSWORD_FILE", ""))
        self.database_kind = os.environ.get("TENANT_DATABASE") or SQLITE
        if self.database_kind not in (SQLITE, POSTGRES):
            sys.exit(f"config error: TENANT_DATABASE={self.database_kind!r} is not sqlite or postgres: run the "
                     "metrics exporter through ./invoke up --monitoring")
        self._postgres_password_file = Path(os.environ.get("METRICS_POSTGRES_PASSWORD_FILE", ""))

    @property
    def on_postgres(self) -> bool:
        return self.database_kind == POSTGRES

    def queue_key(self, queue: str) -> str:
        """kombu's list of one queue (prefix + queue name; priority 0): deployment/tenant.py Spec.queue_keys."""
        return naming.key_prefix(self.tenant) + queue

    def redis(self, **kw):
        import redis

        try:
            password = self._password_file.read_text().strip()
        except OSError as exc:
            sys.exit(f"config error: METRICS_PASSWORD_FILE={self._password_file} is unreadable ({exc.strerror}): "
                     "run ./invoke up --monitoring on the host (it writes the file)")
        env = os.environ.get
        return redis.Redis(host=env("REDIS_HOST", naming.REDIS_SERVICE),
                           port=int(env("REDIS_PORT", str(naming.REDIS_TLS_PORT))), db=naming.BROKER_DB,
                           username=naming.metrics_user(self.tenant), password=password, ssl=True,
                           ssl_ca_certs=env("TLS_CA_FILE", "/run/secrets/tls/ca.crt"),
                           ssl_certfile=env("TLS_CERT_FILE", "/run/secrets/tls/client.crt"),
                           ssl_keyfile=env("TLS_KEY_FILE", "/run/secrets/tls/client.key"), ssl_cert_reqs="required",
                           client_name=naming.metrics_user(self.tenant), socket_connect_timeout=5, **kw)

    @property
    def db_path(self) -> Path:
        return self.data_dir / DB_FILE

    def database(self) -> sqlite3.Connection:
        """A read-only connection (the volume is mounted read-only; WAL readers need its -shm to exist)."""
        return sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=2)

    def postgres(self):
        """A connection to the tenant's PostgreSQL database as its metrics role (TLS verify-full against the CA)."""
        import psycopg

        try:
            password = self._postgres_password_file.read_text().strip()
        except OSError as exc:
            sys.exit(f"config error: METRICS_POSTGRES_PASSWORD_FILE={self._postgres_password_file} is unreadable "
                     f"({exc.strerror}): run ./invoke up --monitoring on the host (it writes the file)")
        env = os.environ.get
        role = naming.database_metrics_role(self.tenant)
        return psycopg.connect(host=env("DATABASE_HOST", naming.POSTGRES_SERVICE),
                               port=int(env("DATABASE_PORT", str(naming.POSTGRES_PORT))),
                               dbname=naming.database_name(self.tenant), user=role, password=password,
                               sslmode="verify-full", sslrootcert=env("TLS_CA_FILE", "/run/secrets/tls/ca.crt"),
                               connect_timeout=5, application_name=role, autocommit=True)


# ---- workers alive, from their heartbeats ------------------------------------------------------------------
class Heartbeats:
    """Keeps the last worker-heartbeat of each worker node, from one PSUBSCRIBE on a thread of its own."""

    def __init__(self, source: Source):
        self.source = source
        self.seen: dict[str, float] = {}
        self.lock = threading.Lock()
        self.connected = False

    def record(self, event: dict, now: float) -> None:
        host = str(event.get("hostname") or "")
        kind = event.get("type")
        with self.lock:
            if kind == GONE_EVENT:
                self.seen.pop(host, None)
            elif kind in ALIVE_EVENTS and host:
                self.seen[host] = now

    def alive(self, now: float) -> int:
        with self.lock:
            self.seen = {h: t for h, t in self.seen.items() if now - t <= HEARTBEAT_WINDOW}
            return len(self.seen)

    def run(self) -> None:
        pattern = naming.worker_events_pattern(self.source.tenant)
        while True:
            try:
                pubsub = self.source.redis(health_check_interval=30).pubsub(ignore_subscribe_messages=True)
                pubsub.psubscribe(pattern)
                self.connected = True
                for message in pubsub.listen():
                    event = event_of(message["data"]) if message.get("type") == "pmessage" else None
                    if event:
                        self.record(event, time.time())
            except Exception as exc:  # noqa: BLE001 - Redis restarts: report, wait, reconnect
                self.connected = False
                print(f"metrics: worker events: {type(exc).__name__}: {exc}; reconnecting", file=sys.stderr)
                time.sleep(RECONNECT_AFTER)


# ---- finished tasks, from the result database -------------------------------------------------------------
def _parse_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace(" ", "T")).replace(tzinfo=None)


class Results:
    """Counters of finished tasks and their runtimes, advanced by a date_done watermark at every scrape."""

    def __init__(self, source: Source, start: dt.datetime):
        self.source = source
        self.watermark = start.strftime("%Y-%m-%d %H:%M:%S.%f")
        self.at_watermark: set[tuple] = set()  # rows seen with date_done == watermark: never counted twice
        self.counts = dict.fromkeys(STATES.values(), 0)
        self.buckets = [0] * len(RUNTIME_BUCKETS)
        self.runtime_sum = 0.0
        self.runtime_count = 0
        self.rows = math.nan
        self.rows_at = 0.0

    def advance(self, conn, now: float, kind: str = SQLITE) -> None:
        """conn: the SQLite connection, or a psycopg one (kind postgres); both have execute() returning rows."""
        seen = False
        for task_id, status, created, done in conn.execute(FINISHED_QUERY[kind], (self.watermark,)).fetchall():
            key = (task_id, status, done)
            if done == self.watermark and key in self.at_watermark:
                continue
            seen = True
            if done != self.watermark:
                self.watermark, self.at_watermark = done, set()
            self.at_watermark.add(key)
            self.counts[STATES[status]] += 1
            if status != "RETRY" and created:
                seconds = max(0.0, (_parse_time(done) - _parse_time(created)).total_seconds())
                self.runtime_sum += seconds
                self.runtime_count += 1
                for i, bound in enumerate(RUNTIME_BUCKETS):
                    if seconds <= bound:
                        self.buckets[i] += 1
        if now - self.rows_at >= ROWS_EVERY or seen:  # new results: count again, else once a minute
            self.rows = conn.execute(f"SELECT COUNT(*) FROM {RESULT_TABLE}").fetchone()[0]  # noqa: S608
            self.rows_at = now


# ---- the exposition ---------------------------------------------------------------------------------------
def _number(value: float) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    return f"{value:.6g}" if isinstance(value, float) else str(value)


class Exporter:
    def __init__(self, source: Source):
        self.source = source
        self.heartbeats = Heartbeats(source)
        self.results = Results(source, dt.datetime.now(dt.UTC))
        self.lock = threading.Lock()
        self._client = None
        self._refused: set[str] = set()  # keys already reported as refused (said once, not every scrape)

    def _redis_values(self, now: float) -> tuple[dict[str, dict[str, float]], float, bool]:
        """({metric: {queue: value}}, unacked, every key read) from one pipeline: LLEN + LINDEX -1 per queue, HLEN.

        A key the ACL refuses (a queue declared after the metrics user's rule was last rendered) reads NaN, and
        says so once: the other queues stay visible. A lost connection raises."""
        if self._client is None:
            self._client = self.source.redis(socket_timeout=5)
        queues = self.source.queues
        pipe = self._client.pipeline(transaction=False)
        for queue in queues:
            key = self.source.queue_key(queue)
            pipe.llen(key).lindex(key, -1)
        pipe.hlen(naming.unacked_key(self.source.tenant))
        replies = pipe.execute(raise_on_error=False)
        refused = {i for i, r in enumerate(replies) if isinstance(r, Exception)}
        for i in sorted(refused):
            what = naming.unacked_key(self.source.tenant) if i == len(replies) - 1 else self.source.queue_key(
                queues[i // 2])
            if what not in self._refused:
                self._refused.add(what)
                print(f"metrics: {what}: {type(replies[i]).__name__}: {replies[i]} (reads NaN)", file=sys.stderr)
        depths, ages = {}, {}
        for n, queue in enumerate(queues):
            depth, oldest = replies[2 * n], replies[2 * n + 1]
            if {2 * n, 2 * n + 1} & refused:
                depths[queue] = ages[queue] = math.nan
                continue
            published = published_at(oldest)
            depths[queue] = depth
            ages[queue] = 0.0 if depth == 0 else (max(0.0, now - published) if published else math.nan)
        unacked = math.nan if len(replies) - 1 in refused else replies[-1]
        return {"queue_depth": depths, "oldest_queued_task_age_seconds": ages}, unacked, not refused

    def _postgres_values(self, now: float) -> dict[str, float]:
        """Size, the tenant role's sessions and limit, and the result table, in one connection closed after it."""
        role = naming.database_role(self.source.tenant)
        with self.source.postgres() as conn:
            size, connections, limit = conn.execute(
                "SELECT pg_catalog.pg_database_size(pg_catalog.current_database()), "
                "(SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE usename = %s), "
                "(SELECT rolconnlimit FROM pg_catalog.pg_roles WHERE rolname = %s)", (role, role)).fetchone()
            if not self.source.results_in_redis:
                self.results.advance(conn, now, POSTGRES)
        return {"database_size_bytes": size, "database_connections": connections,
                "database_connection_limit": math.nan if limit is None else limit}

    def _database_values(self, now: float) -> dict[str, float]:
        if self.source.on_postgres:
            return self._postgres_values(now)
        path = self.source.db_path
        size = sum(p.stat().st_size for p in (path, path.with_name(DB_FILE + "-wal")) if p.exists())
        conn = self.source.database()
        try:
            if self.source.results_in_redis:  # no result rows to count: only whether the database is readable
                conn.execute("PRAGMA schema_version").fetchone()
            else:
                self.results.advance(conn, now)
        finally:
            conn.close()  # never held open: a restore may replace the file
        return {"database_bytes": size}

    def _result_lines(self, label: str, db_up: int) -> list[str]:
        """The result table's metrics: rows (when the database was read), finished tasks by state, their runtimes."""
        r = self.results
        lines = []
        if db_up:
            lines += ["# HELP tenantstack_result_rows Rows in the tenant's task result table.",
                      "# TYPE tenantstack_result_rows gauge", f"tenantstack_result_rows{{{label}}} {_number(r.rows)}"]
        lines += ["# HELP tenantstack_tasks_finished_total Tasks finished since this exporter started.",
                  "# TYPE tenantstack_tasks_finished_total counter"]
        lines += [f'tenantstack_tasks_finished_total{{{label},state="{s}"}} {n}' for s, n in r.counts.items()]
        lines += ["# HELP tenantstack_task_runtime_seconds Runtime of finished tasks (date_done - date_created).",
                  "# TYPE tenantstack_task_runtime_seconds histogram"]
        lines += [f'tenantstack_task_runtime_seconds_bucket{{{label},le="{b:g}"}} {n}'
                  for b, n in zip(RUNTIME_BUCKETS, r.buckets, strict=True)]
        return [*lines, f'tenantstack_task_runtime_seconds_bucket{{{label},le="+Inf"}} {r.runtime_count}',
                f"tenantstack_task_runtime_seconds_sum{{{label}}} {r.runtime_sum:.6g}",
                f"tenantstack_task_runtime_seconds_count{{{label}}} {r.runtime_count}"]

    def render(self) -> str:
        now = time.time()
        t = self.source.tenant
        label = f'tenant="{t}"'
        lines: list[str] = []

        def header(name: str, help_text: str, kind: str = "gauge") -> None:
            lines.extend([f"# HELP tenantstack_{name} {help_text}", f"# TYPE tenantstack_{name} {kind}"])

        def gauge(name: str, value, help_text: str, kind: str = "gauge") -> None:
            header(name, help_text, kind)
            lines.append(f"tenantstack_{name}{{{label}}} {_number(value)}")

        with self.lock:  # one scrape at a time: the watermark and the client are shared
            try:
                per_queue, unacked, all_read = self._redis_values(now)
                redis_up = int(all_read)
            except Exception as exc:  # noqa: BLE001 - Redis down is a metric, not a crash
                print(f"metrics: Redis: {type(exc).__name__}: {exc}", file=sys.stderr)
                self._client, per_queue, unacked, redis_up = None, {}, None, 0
            try:
                db_values, db_up = self._database_values(now), 1
            except Exception as exc:  # noqa: BLE001 - a database down or refusing is a metric, not a crash
                where = naming.database_name(self.source.tenant) if self.source.on_postgres else self.source.db_path
                print(f"metrics: database {where}: {type(exc).__name__}: {str(exc).strip()}", file=sys.stderr)
                db_values, db_up = {}, 0
            gauge("metrics_redis_up", redis_up, "1 when this exporter could read every one of the tenant's keys "
                  "in Redis.")
            gauge("metrics_database_up", db_up, "1 when this exporter could read the tenant's database "
                  f"({self.source.database_kind}).")
            helps = {"queue_depth": "Messages waiting in each of the tenant's queues (LLEN).",
                     "oldest_queued_task_age_seconds": "How long the oldest message of each queue has waited."}
            for name, values in per_queue.items():
                header(name, helps[name])
                lines.extend(f'tenantstack_{name}{{{label},queue="{q}"}} {_number(v)}' for q, v in values.items())
            if unacked is not None:
                gauge("unacked_messages", unacked, "Messages delivered to a worker and not yet acknowledged.")
            gauge("workers_alive", self.heartbeats.alive(now), "Workers whose heartbeat arrived in the last "
                  f"{HEARTBEAT_WINDOW:g} s.")
            try:
                beat_age = now - (self.source.data_dir / HEARTBEAT_FILE).stat().st_mtime
            except OSError:
                beat_age = math.nan
            gauge("beat_heartbeat_age_seconds", beat_age, "Seconds since the tenant's beat last ticked.")
            gauge("results_in_redis", int(self.source.results_in_redis), "1 when the tenant's task results live in "
                  "Redis: the result-table metrics are not exported.")
            helps = {"database_bytes": "Size of the tenant's SQLite database and WAL.",
                     "database_size_bytes": "Size of the tenant's PostgreSQL database (pg_database_size).",
                     "database_connections": "Sessions of the tenant's PostgreSQL role (pg_stat_activity).",
                     "database_connection_limit": "CONNECTION LIMIT of the tenant's PostgreSQL role."}
            for name, value in db_values.items():
                gauge(name, value, helps[name])
            if not self.source.results_in_redis:
                lines += self._result_lines(label, db_up)
        return "\n".join(lines) + "\n"


def serve(exporter: Exporter) -> None:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt, *args):  # Prometheus scrapes every 15 s: no access log
            pass

        def do_GET(self):  # noqa: N802 - http.server's naming
            if self.path != "/metrics":
                body, status = b"GET /metrics\n", HTTPStatus.NOT_FOUND
            else:
                body, status = exporter.render().encode(), HTTPStatus.OK
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    threading.Thread(target=exporter.heartbeats.run, name="worker-events", daemon=True).start()
    server = ThreadingHTTPServer(("0.0.0.0", PORT), Handler)  # noqa: S104 - the monitoring network only
    print(f"metrics: tenant {exporter.source.tenant}: serving /metrics on :{PORT}", flush=True)
    server.serve_forever()


def check() -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/metrics", timeout=5) as response:  # noqa: S310
            if response.status == HTTPStatus.OK:
                return 0
            print(f"unhealthy: /metrics answered {response.status}", file=sys.stderr)
    except OSError as exc:
        print(f"unhealthy: /metrics: {exc}", file=sys.stderr)
    return 1


def summary(data_dir: Path, beat_only: bool = False) -> dict:
    """The tenant's database as `./invoke status` shows it: last task, failures in the last hour, rows, size.

    beat_only: just the beat's heartbeat (a PostgreSQL tenant: status reads its database on the server itself)."""
    path = data_dir / DB_FILE
    out = {"database": str(path), "readable": False}
    try:
        beat = data_dir / HEARTBEAT_FILE
        out["beat_heartbeat_age_seconds"] = round(time.time() - beat.stat().st_mtime, 1) if beat.exists() else None
        if beat_only:
            return {"beat_heartbeat_age_seconds": out["beat_heartbeat_age_seconds"]}
        out["database_bytes"] = sum(p.stat().st_size for p in (path, path.with_name(DB_FILE + "-wal")) if p.exists())
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2)
        try:
            hour_ago = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S")
            last = conn.execute(f"SELECT task_name, status, date_done FROM {RESULT_TABLE} "  # noqa: S608
                                "WHERE status IN ('SUCCESS', 'FAILURE', 'RETRY', 'REVOKED') "
                                "ORDER BY date_done DESC LIMIT 1").fetchone()
            counts = dict(conn.execute(f"SELECT status, COUNT(*) FROM {RESULT_TABLE} WHERE date_done >= ? "  # noqa: S608
                                       "GROUP BY status", (hour_ago,)).fetchall())
            out["result_rows"] = conn.execute(f"SELECT COUNT(*) FROM {RESULT_TABLE}").fetchone()[0]  # noqa: S608
        finally:
            conn.close()
    except (OSError, sqlite3.Error) as exc:
        out["error"] = str(exc)
        return out
    out.update(readable=True, failures_last_hour=counts.get("FAILURE", 0),
               finished_last_hour=counts.get("SUCCESS", 0) + counts.get("FAILURE", 0),
               last_task=dict(zip(("name", "status", "date_done"), last, strict=True)) if last else None)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tenantstack.metrics", description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="healthcheck: exit 0 when /metrics answers")
    mode.add_argument("--summary", metavar="DATA_DIR", nargs="?", const="/data",
                      help="print the tenant database's summary as JSON and exit")
    parser.add_argument("--beat-only", action="store_true",
                        help="with --summary: only the beat's heartbeat age (the database is on PostgreSQL)")
    args = parser.parse_args(argv)
    if args.check:
        return check()
    if args.summary:
        print(json.dumps(summary(Path(args.summary), beat_only=args.beat_only)))
        return 0
    serve(Exporter(Source()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
