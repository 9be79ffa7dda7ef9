"""`./invoke status`: one screen (or one JSON object) for operators that needs no Prometheus.

Read directly: Redis with the operator's admin client (ops/deploy/redis_admin.py): INFO, and per tenant, in one
pipeline, LLEN of each declared queue (CELERY_QUEUES: deployment/tenant.py Spec.queue_keys), the publish time of
each queue's oldest message (LINDEX -1, the header tenantstack/published.py adds) and HLEN of its unacked hash;
workers alive from their heartbeats (one PSUBSCRIBE for LISTEN seconds: Celery sends one every 2 s); whether each
worker pool's service (WORKER_POOLS) runs; each tenant's database through `python -m tenantstack.metrics --summary`
in its running web container, or in a throwaway container on its volume when the tenant is stopped; the last
verified backup and the certificates on the host (ops/monitor/textfile.py). Every value an alert rule watches is
compared with the same threshold (envs/monitoring.env), per queue where the rule is per queue, and marked red (`!`
without a terminal) when the alert would fire; `show` returns 1 then.

PostgreSQL (issue 21), when a tenant is on it: the server's health (its container's healthcheck) and its client
connections of max_connections, and per PostgreSQL tenant its database's size, its role's sessions of its
CONNECTION LIMIT and the result table (last task, failures in the last hour), read as the bootstrap superuser over
the server's own socket (`docker exec -i ... psql`, ops/deploy/postgres_admin.py's PSQL; no password anywhere), one
psql per tenant database and one for the server. The beat's heartbeat still comes from the tenant's volume.

A tenant's row shows its queues together (the sum of their depths, the oldest of their oldest messages); a tenant
with several queues gets one line per queue below it, and one with several pools one line per pool, so a tenant
with one queue and one pool looks as it always did.
"""
import datetime as dt
import json
import sys
import time

import redis
from deployment import envs, naming
from deployment import tenant as tenant_model
from deployment.errors import DeploymentError
from deployment.instance import UIDS
from deployment.messages import ALIVE_EVENTS, event_of, published_at
from ops.config import backup_policy, tenants
from ops.config.paths import INSTANCE
from ops.core.errors import OpsError
from ops.core.run import probe, wait_until
from ops.data import backup_format as fmt
from ops.deploy import compose, containers, health, postgres_admin, redis_admin
from ops.monitor import config, textfile

LISTEN = 4.5  # seconds of worker events: two of Celery's heartbeat intervals (2 s), so a late one still counts
RED, RESET = "\033[31;1m", "\033[0m"
# The rules that fire per queue (labels tenant and queue, as the exporter's series carry them): status names them
# TenantQueueBacklog{tenant=b,queue=reports}, every other tenant alert TenantWorkerDown{tenant=b}.
QUEUE_ALERTS = ("TenantQueueBacklog", "TenantOldestTaskTooOld")


def thresholds() -> dict[str, int]:
    """envs/monitoring.env's values, or the table's defaults before `init` wrote the file."""
    if INSTANCE.monitoring_env.exists():
        return config.settings()
    return {s.name: int(s.default) for s in envs.MONITORING_SETTINGS}


def _age(seconds: float | None) -> str:
    """A duration in its two largest units: 3d4h, 2h5m, 4m10s, 9s; `-` when unknown."""
    if seconds is None:
        return "-"
    s = int(seconds)
    d, h, m = s // 86400, s % 86400 // 3600, s % 3600 // 60
    if d:
        return f"{d}d{h}h"
    if h:
        return f"{h}h{m}m"
    return f"{m}m{s % 60}s" if m else f"{s}s"


def declarations(name: str) -> tuple[tenant_model.Spec, str | None]:
    """The tenant's queues and pools from its env file (defaults before `init`); a file that does not hold gives
    the defaults and its one-line problem, so status still shows everything else."""
    try:
        return tenants.declared(name).spec, None
    except DeploymentError as exc:
        return tenant_model.spec(name, {}), str(exc)


def listen_for_workers(client: redis.Redis, names: list[str]) -> dict[str, set[str]]:
    """tenant -> worker nodes whose heartbeat (or online event) arrived within LISTEN seconds."""
    patterns = {naming.worker_events_pattern(n): n for n in names}
    seen: dict[str, set[str]] = {n: set() for n in names}
    if not patterns:
        return seen
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.psubscribe(*patterns)
    end = time.monotonic() + LISTEN

    def pending() -> str | None:
        message = pubsub.get_message(timeout=0.2)
        if message and message.get("type") == "pmessage":
            tenant = patterns.get(message["pattern"].decode())
            event = event_of(message["data"])
            if tenant and event and event.get("type") in ALIVE_EVENTS:
                seen[tenant].add(str(event.get("hostname")))
        return None if time.monotonic() >= end else "worker heartbeats"

    try:
        wait_until(pending, timeout=LISTEN + 5, what="status", interval=0)
    finally:
        pubsub.close()
    return seen


def database_summary(name: str, beat_only: bool = False) -> dict:
    """The tenant's database (python -m tenantstack.metrics --summary): in its web if running, else on its volume.
    beat_only: only the beat's heartbeat (a PostgreSQL tenant's database is read on the server: postgres_summary)."""
    argv = ["python", "-m", "tenantstack.metrics", "--summary", "/data", *(["--beat-only"] if beat_only else [])]
    web = naming.service_name(name, "web")
    if containers.is_running(web):
        done = probe(["docker", "exec", containers.name(web), *argv], timeout=60, what=f"summary in {web}")
        out = done.stdout
    elif containers.volume_exists(naming.data_volume(name)):
        out = containers.volume_job(compose.image("app"), str(UIDS["app"]),
                                    {containers.volume(naming.data_volume(name)): "/data:ro"}, " ".join(argv),
                                    timeout=120)
    else:
        return {"readable": False, "error": "no data volume yet (never started)"}
    try:
        return json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"readable": False, "error": "the summary printed nothing readable"}


# ---- PostgreSQL, as the bootstrap superuser over the server's socket -------------------------------------------
RESULTS = "django_celery_results_taskresult"
_UTC = "to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')"  # the SQLite summary's spelling of a time
SERVER_SQL = ("SELECT json_build_object('version', current_setting('server_version'), "
              "'connections', (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'), "
              "'max_connections', current_setting('max_connections')::int, "
              "'reserved', current_setting('superuser_reserved_connections')::int);\n")
# Per tenant database: size and its role's sessions and limit; then its result table, when migrations made it.
TENANT_SQL = """SELECT json_build_object('database_size_bytes', pg_database_size(current_database()),
  'connections', (SELECT count(*) FROM pg_stat_activity WHERE usename = :'role'),
  'connection_limit', (SELECT rolconnlimit FROM pg_roles WHERE rolname = :'role'));
SELECT to_regclass('{table}') IS NOT NULL AS has_results \\gset
\\if :has_results
SELECT json_build_object('result_rows', (SELECT count(*) FROM {table}),
  'failures_last_hour', (SELECT count(*) FROM {table} WHERE status = 'FAILURE' AND date_done >= now() - interval '1h'),
  'finished_last_hour', (SELECT count(*) FROM {table} WHERE status IN ('SUCCESS', 'FAILURE')
                         AND date_done >= now() - interval '1h'),
  'last_task', (SELECT json_build_object('name', task_name, 'status', status, 'date_done', {done}) FROM {table}
                WHERE status IN ('SUCCESS', 'FAILURE', 'RETRY', 'REVOKED') ORDER BY date_done DESC LIMIT 1));
\\endif
""".format(table=RESULTS, done=_UTC.format("date_done"))


def _psql_json(sql: str, db: str, *variables: str) -> list[dict]:
    """Each line psql printed as a JSON object; raises OpsError with psql's error line when it failed."""
    argv = ["docker", "exec", "-i", containers.name(naming.POSTGRES_SERVICE), *postgres_admin.PSQL[:-2], "-d", db,
            "-At", *[f"--variable={v}" for v in variables]]
    done = probe(argv, input=sql, timeout=30, what=f"psql on {db}")
    error = next((ln for ln in (done.stderr or "").splitlines() if "ERROR" in ln or "FATAL" in ln), None)
    if done.returncode != 0 or error:
        raise OpsError(error or (done.stderr or "").strip()[:300] or f"psql on {db} exited {done.returncode}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def postgres_summary(name: str) -> dict:
    """A PostgreSQL tenant's database as status shows it (the SQLite summary's keys, plus size and connections)."""
    role = naming.database_role(name)
    try:
        found = _psql_json(TENANT_SQL, naming.database_name(name), f"role={role}")
    except OpsError as exc:
        return {"readable": False, "error": str(exc)}
    out = {"readable": True, "result_rows": None, "last_task": None}
    for part in found:
        out.update(part)
    return out


def _postgres_part(names: list[str], doc: dict) -> list[str]:
    """The server's health and connections into doc["postgres"]; returns the alerts it would fire."""
    state = health.states([naming.POSTGRES_SERVICE])[naming.POSTGRES_SERVICE]
    doc["postgres"] = {"state": state, "tenants": names}
    if state != "healthy":
        return ["PostgresDown"]
    try:
        doc["postgres"].update(_psql_json(SERVER_SQL, naming.POSTGRES_MAINTENANCE_DB)[0])
    except (OpsError, IndexError) as exc:
        doc["postgres"]["error"] = str(exc)
        return ["PostgresDown"]
    return []


def _redis_part(client: redis.Redis, specs: dict[str, tenant_model.Spec], limits: dict[str, int], now: float,
                doc: dict) -> list[str]:
    """Redis' INFO and each tenant's keys into doc; returns the alerts they would fire (the tenants' come later)."""
    try:
        info = client.info()
    except (redis.RedisError, OSError) as exc:
        doc["redis"]["error"] = f"{type(exc).__name__}: {exc}"
        return ["RedisDown"]
    alerts = []
    used, maxmemory = info["used_memory"], info.get("maxmemory") or 0
    persisting = all(info.get(k, "ok") == "ok" for k in ("aof_last_write_status", "aof_last_bgrewrite_status",
                                                          "rdb_last_bgsave_status"))
    # The server's own name and version (valkey 8.1.1); redis_version is Valkey's Redis compatibility level (7.2.4).
    server = fmt.server_info(info)
    doc["redis"] = {"up": True, "server": server["name"], "version": server["version"],
                    "redis_version": server["redis_version"], "used_memory": used, "maxmemory": maxmemory,
                    "memory_percent": round(100 * used / maxmemory, 1) if maxmemory else None,
                    "clients": info["connected_clients"], "persisting": persisting,
                    "aof_enabled": bool(info.get("aof_enabled")),
                    "last_save": dt.datetime.fromtimestamp(info["rdb_last_save_time"], dt.UTC).isoformat(),
                    "last_save_age_seconds": round(now - info["rdb_last_save_time"]),
                    "uptime_seconds": info["uptime_in_seconds"]}
    if maxmemory and 100 * used / maxmemory > limits["ALERT_REDIS_MEMORY_PERCENT"]:
        alerts.append("RedisMemoryHigh")
    if info["connected_clients"] > limits["ALERT_REDIS_CLIENTS"]:
        alerts.append("RedisTooManyClients")
    if not persisting:
        alerts.append("RedisNotPersisting")
    workers = listen_for_workers(client, list(specs))
    for name, spec in specs.items():
        doc["tenants"][name] = {**_queues(client, spec, now), "workers": len(workers[name])}
    return alerts


def _queues(client: redis.Redis, spec: tenant_model.Spec, now: float) -> dict:
    """One pipeline per tenant: LLEN + LINDEX -1 of each queue, HLEN of the unacked hash (one per tenant).

    queue_depth and oldest_queued_age_seconds stay the tenant's totals (the sum; the oldest known age), so one
    queue reads as before; `queues` has each queue's own, which the per-queue thresholds compare."""
    pipe = client.pipeline(transaction=False)
    for key in spec.queue_keys():
        pipe.llen(key).lindex(key, -1)
    pipe.hlen(naming.unacked_key(spec.tenant))
    replies = pipe.execute()
    queues = {}
    for n, queue in enumerate(spec.queues):
        depth, published = replies[2 * n], published_at(replies[2 * n + 1])
        age = round(now - published, 1) if published else (0 if depth == 0 else None)
        queues[queue] = {"depth": depth, "oldest_queued_age_seconds": age}
    ages = [q["oldest_queued_age_seconds"] for q in queues.values() if q["oldest_queued_age_seconds"] is not None]
    return {"queue_depth": sum(q["depth"] for q in queues.values()), "unacked": replies[-1],
            "oldest_queued_age_seconds": max(ages) if ages else None, "queues": queues}


def _host_part(limits: dict[str, int], now: float, doc: dict) -> list[str]:
    """The last verified backup and the certificates into doc; returns the alerts they would fire."""
    alerts = []
    found = textfile.last_verified_backup()
    if found:
        doc["backup"] = {"name": found[0], "created": found[1].isoformat(),
                         "age_seconds": round(now - found[1].timestamp()),
                         "server": {"name": found[2]["name"], "version": found[2]["version"]}}
    if not found or doc["backup"]["age_seconds"] > backup_policy.load().alert_seconds:
        alerts.append("BackupMissing")
    if textfile.copy_state().get("status") == "failed":
        alerts.append("BackupCopyFailed")
    for cn, when in sorted(textfile.certificates().items()):
        left = when.timestamp() - now
        doc["certificates"][cn] = {"not_after": when.isoformat(), "days_left": round(left / 86400, 1)}
        if left < limits["ALERT_CERT_DAYS"] * 86400:
            alerts.append(f"CertificateExpiring{{certificate={cn}}}")
    return alerts


def collect() -> dict:
    """Everything the screen shows, with `alerts`: what an alert rule would fire on now."""
    limits = thresholds()
    now = time.time()
    doc = {"instance": INSTANCE.name, "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
           "thresholds": limits, "redis": {"up": False}, "tenants": {}, "backup": None, "certificates": {}}
    declared = {name: declarations(name) for name in tenants.known_names()}
    specs = {name: spec for name, (spec, _) in declared.items()}
    alerts = _redis_part(redis_admin.operator(timeout=5), specs, limits, now, doc)
    on_postgres = [name for name, spec in specs.items() if spec.on_postgres]
    if on_postgres:
        alerts += _postgres_part(on_postgres, doc)
    server_up = bool(on_postgres) and "error" not in doc["postgres"] and doc["postgres"]["state"] == "healthy"
    for name, (spec, problem) in declared.items():
        row = doc["tenants"].setdefault(name, {})
        if problem:
            row["error"] = problem
        row["database_kind"] = spec.database
        row["database"] = database_summary(name, beat_only=spec.on_postgres)
        if spec.on_postgres:
            row["database"].update(postgres_summary(name) if server_up else
                                   {"readable": False, "error": "PostgreSQL is not running"})
        row["results_in_redis"] = spec.has("results")  # no result rows: the failure ratio cannot be read
        row["running"] = containers.is_running(naming.service_name(name, "worker"))  # the default pool's
        row["pools"] = {p.name: {"service": p.service(name), "queues": list(p.queues), "concurrency": p.concurrency,
                                 "running": containers.is_running(p.service(name))} for p in spec.pools}
        row["alerts"] = _tenant_alerts(row, limits)
        alerts += [f"{a}{{tenant={name}}}" for a in row["alerts"] if a not in QUEUE_ALERTS]
        alerts += [f"{a}{{tenant={name},queue={q}}}" for q, queue in row.get("queues", {}).items()
                   for a in queue["alerts"]]
    doc["alerts"] = alerts + _host_part(limits, now, doc)
    return doc


def _queue_alerts(queue: dict, limits: dict[str, int]) -> list[str]:
    out = []
    if queue["depth"] > limits["ALERT_QUEUE_DEPTH"]:
        out.append("TenantQueueBacklog")
    if (queue["oldest_queued_age_seconds"] or 0) > limits["ALERT_OLDEST_TASK_SECONDS"]:
        out.append("TenantOldestTaskTooOld")
    return out


def _tenant_alerts(row: dict, limits: dict[str, int]) -> list[str]:
    """The tenant's alerts by name (a per-queue one once, whichever queues fire it); each queue's in its own row."""
    out = []
    for queue in row.get("queues", {}).values():
        queue["alerts"] = _queue_alerts(queue, limits)
        out += [a for a in queue["alerts"] if a not in out]
    if "workers" in row and row["workers"] == 0:
        out.append("TenantWorkerDown")
    db = row.get("database") or {}
    beat_age = db.get("beat_heartbeat_age_seconds")
    if beat_age is not None and beat_age > limits["ALERT_BEAT_STALE_SECONDS"]:
        out.append("TenantBeatStale")
    finished, failed = db.get("finished_last_hour") or 0, db.get("failures_last_hour") or 0
    if finished >= limits["ALERT_FAILURE_MIN_TASKS"] and 100 * failed / finished > limits["ALERT_FAILURE_PERCENT"]:
        out.append("TenantTaskFailureRatioHigh")
    limit, used = db.get("connection_limit") or 0, db.get("connections") or 0
    if limit > 0 and 100 * used / limit > limits["ALERT_DATABASE_CONNECTIONS_PERCENT"]:
        out.append("TenantDatabaseConnectionsHigh")
    if (db.get("database_size_bytes") or 0) > limits["ALERT_DATABASE_SIZE_MB"] * 2**20:
        out.append("TenantDatabaseTooLarge")
    return out


def _mark(text: str, bad: bool, color: bool) -> str:
    if not bad:
        return text
    return f"{RED}{text}{RESET}" if color else f"!{text}"


def _tenant_lines(name: str, row: dict, color: bool) -> list[str]:
    """The tenant's row; then a line per queue when it has several, a line per pool when it has several."""
    bad = set(row.get("alerts", []))
    db = row.get("database") or {}
    last = db.get("last_task") or {}
    last_text = f"{last.get('status', '')} {last.get('date_done', '')[:19]}".strip() or (db.get("error") or "-")
    if row.get("results_in_redis"):  # the result table holds nothing: say where the results are instead
        last_text = "- (results in Redis)"
    if row.get("error"):
        last_text += f" ({row['error']})"
    cells = [
        f"{name:<16}",
        _mark(f"{row.get('queue_depth', '-'):>7}", "TenantQueueBacklog" in bad, color),
        f"{row.get('unacked', '-'):>9}",
        _mark(f"{_age(row.get('oldest_queued_age_seconds')):>8}", "TenantOldestTaskTooOld" in bad, color),
        _mark(f"{row.get('workers', '-'):>9}", "TenantWorkerDown" in bad, color),
        "  " + _mark(f"{'-' if row.get('results_in_redis') else db.get('failures_last_hour', '-'):>10}",
                     "TenantTaskFailureRatioHigh" in bad, color),
        "  " + _mark(last_text, "TenantBeatStale" in bad, color)
        + (" (beat stale)" if "TenantBeatStale" in bad else ""),
    ]
    lines = ["".join(cells)]
    queues = row.get("queues", {})
    if len(queues) > 1:
        for queue, q in queues.items():
            alerts = set(q.get("alerts", []))
            lines.append(f"{'  ' + queue:<16}" + _mark(f"{q['depth']:>7}", "TenantQueueBacklog" in alerts, color)
                         + " " * 9 + _mark(f"{_age(q['oldest_queued_age_seconds']):>8}",
                                           "TenantOldestTaskTooOld" in alerts, color))
    if row.get("database_kind") == "postgres":  # its database's line: where it is, how big, how many connections
        lines.append(_postgres_line(db, bad, color))
    pools = row.get("pools", {})
    if len(pools) > 1:
        for pool, p in pools.items():
            state = "running" if p["running"] else "stopped"
            lines.append(f"  pool {pool}: {p['service']} {state}, {p['concurrency']} on {'+'.join(p['queues'])}")
    return lines


def _postgres_line(db: dict, bad: set, color: bool) -> str:
    """A PostgreSQL tenant's second line: its database's size and its role's connections of its limit."""
    if not db.get("readable"):
        return _mark(f"  database postgres: unreadable ({db.get('error', '')})", True, color)
    limit = db.get("connection_limit")
    size = _mark(f"  database postgres: {(db.get('database_size_bytes') or 0) / 2**20:.1f} MiB",
                 "TenantDatabaseTooLarge" in bad, color)
    connections = _mark(f"connections {db.get('connections', '-')}/{'unlimited' if (limit or 0) < 0 else limit}",
                        "TenantDatabaseConnectionsHigh" in bad, color)
    return f"{size}, {connections}" + ("" if db.get("result_rows") is not None else " (no result table yet)")


def _postgres_server_line(pg: dict, color: bool) -> str:
    if pg["state"] != "healthy" or "error" in pg:
        return _mark(f"PostgreSQL: {pg['state'].upper()} ({pg.get('error', 'see ./invoke ps')})", True, color)
    return (f"PostgreSQL: {pg['version']}, healthy, connections {pg['connections']} of {pg['max_connections']} "
            f"({pg['reserved']} reserved for the superuser), tenants {', '.join(pg['tenants'])}")


def render(doc: dict, color: bool) -> str:
    """The screen: Redis, one row per tenant, backup, certificates; red (or `!`) where an alert would fire."""
    alerts = set(doc["alerts"])
    lines = [f"instance {doc['instance']} at {doc['time']}"]
    r = doc["redis"]
    if not r["up"]:
        lines.append(_mark(f"Redis: DOWN ({r.get('error', '')})", True, color))
    else:
        memory = f"{r['used_memory'] / 2**20:.1f} MiB of {r['maxmemory'] / 2**20:.0f} MiB ({r['memory_percent']} %)"
        lines.append("Redis: " + ", ".join([
            f"{r['server']} {r['version']}", f"up {_age(r['uptime_seconds'])}",
            _mark(f"memory {memory}", "RedisMemoryHigh" in alerts, color),
            _mark(f"clients {r['clients']}", "RedisTooManyClients" in alerts, color),
            _mark(f"persistence {'ok' if r['persisting'] else 'FAILING'}", not r["persisting"], color),
            f"last save {_age(r['last_save_age_seconds'])} ago"]))
    if doc.get("postgres"):
        lines.append(_postgres_server_line(doc["postgres"], color))
    lines.append(f"{'tenant':<16}{'queue':>7}{'unacked':>9}{'oldest':>8}{'workers':>9}  {'failed/1h':>10}  last task")
    for name, row in doc["tenants"].items():
        lines += _tenant_lines(name, row, color)
    b = doc["backup"]
    text = (f"last verified backup: {b['name']}, {_age(b['age_seconds'])} ago, written by "
            f"{b['server']['name']} {b['server']['version']}") if b else "last verified backup: none"
    lines.append(_mark(text, "BackupMissing" in alerts, color))
    certs = doc["certificates"]
    soonest = min(certs.items(), key=lambda kv: kv[1]["days_left"]) if certs else None
    expiring = [cn for cn in certs if f"CertificateExpiring{{certificate={cn}}}" in alerts]
    if soonest:
        text = f"certificates: {len(certs)}, first to expire {soonest[0]} in {soonest[1]['days_left']:.0f} days"
        lines.append(_mark(text + (f" (expiring: {', '.join(expiring)})" if expiring else ""), bool(expiring), color))
    lines.append(_mark(f"alerts: {', '.join(doc['alerts'])}", True, color) if doc["alerts"] else "alerts: none")
    return "\n".join(lines)


def show(as_json: bool = False, watch: bool = False, interval: float = 5.0) -> int:
    """Print the status (again every `interval` seconds with watch, until Ctrl-C); 1 when an alert would fire."""
    color = sys.stdout.isatty() and not as_json
    while True:
        doc = collect()  # Redis down is shown (and alerts), never raised
        text = json.dumps(doc, indent=2, sort_keys=True) if as_json else render(doc, color)
        if watch and color:
            sys.stdout.write("\033[H\033[2J")  # clear the terminal between redraws
        print(text, flush=True)
        if not watch:
            return 1 if doc["alerts"] else 0
        try:
            time.sleep(interval)
        except KeyboardInterrupt:
            return 0
