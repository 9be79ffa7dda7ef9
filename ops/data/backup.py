"""`invoke backup`: a verified, self-describing copy of Redis (RDB + AOF) and every running tenant's database.

What a backup folder holds, and how it is verified, is the backup format's (ops/data/backup_format.py).
This module takes one: Redis' files copied at one instant (client writes paused for the copy) and each
running tenant's database (SQLite online backup through its own container; a PostgreSQL tenant's pg_dump
from the server's image, started right after Redis' snapshot began, so both are of about the same moment:
ops/data/postgres_data.py), written under backups/.<stamp>.partial with umask 077 and renamed only after it
verified.

Interruptions (ops/data/journal.py): the paused AOF rewrites, the write pause and the .partial folder
are journaled before they happen, so a killed backup is undone by the next task or `./invoke recover`,
and leftover .partial folders are removed by the next backup. Free space is checked first; a full
disk, any OSError and Redis going away mid-backup end in one line, with nothing half-written kept; so does a
running tenant on PostgreSQL while the PostgreSQL server is down, before anything is written.
"""
import contextlib
import datetime as dt
import json
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import redis
from deployment import envs, naming
from ops.config import tenants
from ops.config.envfile import rel
from ops.config.paths import BACKUPS
from ops.core.errors import OpsError, timed
from ops.core.run import wait_until
from ops.data import backup_format as fmt
from ops.data import bgsave as bg
from ops.data import journal as jn
from ops.data import postgres_data as pg
from ops.data import retention, space, tenant_keys
from ops.data.journal import fault_point
from ops.deploy import containers, redis_admin

PAUSE_MS = 120_000  # writes resume by themselves after this, even if this process dies mid-copy
DEFAULT_KEEP = int(envs.BACKUP["BACKUP_KEEP_WHOLE"].default)  # envs/backup.env: the policy's one place


def _wait_no_rewrite(client, timeout: float = 600) -> None:
    def pending():
        info = client.info("persistence")
        busy = info.get("aof_rewrite_in_progress") or info.get("aof_rewrite_scheduled")
        return "the running AOF rewrite" if busy else None
    wait_until(pending, timeout=timeout, what="backup", interval=0.1,
               fix="retry later or check `./invoke logs --service redis`")


def _quietly(action) -> None:
    """Run a clean-up step whose failure must not hide the error that got us here (it stays journaled)."""
    with contextlib.suppress(redis.RedisError, OSError, OpsError):
        action()


def snapshot_redis(dest: Path, journal: jn.Journal, log=print, on_snapshot=None) -> dict:
    """Copy a consistent RDB + AOF directory of the running Redis into dest/redis; returns metadata.

    on_snapshot() is called right after BGSAVE began (the instant the RDB holds): the PostgreSQL dumps start there."""
    client = redis_admin.operator(timeout=60)
    redis_admin.ping_or_explain(client)
    (dest / "redis").mkdir(parents=True)
    run_id = client.info("server")["run_id"]
    rewrite_pct = redis_admin.config_get(client, "auto-aof-rewrite-percentage")
    setting = journal.record("config", name="auto-aof-rewrite-percentage", original=rewrite_pct, run_id=run_id)
    redis_admin.config_set(client, "auto-aof-rewrite-percentage", 0)
    log(f"backup: automatic AOF rewrites paused (auto-aof-rewrite-percentage was {rewrite_pct})")
    fault_point("paused-rewrites")
    try:
        _wait_no_rewrite(client)
        t0 = time.monotonic()
        pause = journal.record("pause", run_id=run_id)
        client.execute_command("CLIENT", "PAUSE", PAUSE_MS, "WRITE")
        try:
            keys = fmt.keyspace(client)
            started = bg.start(client, log=lambda m: log(f"backup: {m}"))
            snapshot_at = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
            if on_snapshot is not None:
                on_snapshot()
            fault_point("bgsave")
            size = containers.copy_out("redis", "/data", [fmt.AOF_DIR], dest / "redis")
            log(f"backup: copied {fmt.AOF_DIR}/ ({size / 2**20:.1f} MiB)")
            fault_point("copy")
            bg.wait(client, started)
            size = containers.copy_out("redis", "/data", ["dump.rdb"], dest / "redis")
            log(f"backup: copied dump.rdb ({size / 2**20:.1f} MiB)")
            paused = time.monotonic() - t0
            if paused * 1000 >= PAUSE_MS:
                raise OpsError(f"copying took {paused:.0f}s, longer than the {PAUSE_MS // 1000}s write pause: "
                               "the copy may be inconsistent; retry when the disk is less busy")
            # A Redis that restarted meanwhile wrote the RDB from other data than the AOF we copied.
            if client.info("server")["run_id"] != run_id:
                raise OpsError("Redis restarted during the backup, so its files are not from one instant; retry")
        finally:
            _quietly(lambda: journal.undo(pause))
        log(f"backup: Redis writes paused for {paused:.2f}s; keyspace {keys}")
    finally:
        try:
            log(f"backup: automatic AOF rewrites: {journal.undo(setting)}")
        except (redis.RedisError, OSError, OpsError) as exc:
            log(f"backup: automatic AOF rewrites not restored yet ({jn.one_line(exc)}): the next task or "
                "`./invoke recover` does it")
    # The manifest names the server by its own name and version (valkey 8.1.1), and keeps redis_version (7.2.4,
    # Valkey's compatibility level) for older tooling that reads only that.
    return {**fmt.server_meta(client.info("server")), "keyspace": keys, "redis_snapshot_at": snapshot_at}


def running_tenants() -> list[str]:
    return [n for n in tenants.known_names() if containers.is_running(naming.service_name(n, "web"))]


def export_tenant_db(name: str, dest: Path, log=print) -> None:
    """A SQLite tenant's database through its own web container (the glue's export_db: SQLite's online backup)."""
    service = naming.service_name(name, "web")
    target = dest / "tenants" / name
    target.mkdir(parents=True, exist_ok=True)
    with open(target / "db.dump", "wb") as out:
        size = containers.exec_stream(service, ["python", "-m", "tenantstack.manage", "export_db"], out)
    with open(target / "db.dump", "rb") as dump:
        kind = "db.sqlite3" if dump.read(16) == b"SQLite format 3\x00" else "db.pgdump"
    (target / "db.dump").rename(target / kind)
    log(f"backup: tenant {name}: {kind} ({size / 2**20:.1f} MiB)")


def _record_last(status: str, name: str, detail: str = "") -> None:
    """The outcome of the latest backup in the instance's state (a failed one leaves no folder to look at)."""
    with contextlib.suppress(OSError):  # a record of the outcome, never a reason to fail
        (jn.STATE / "last-backup.json").write_text(json.dumps({"backup": name, "status": status, "detail": detail,
                                                               "at": jn._now()}) + "\n")


def expected_size(names: list[str]) -> int:
    """What the backup will hold: Redis' files and each running tenant's database, measured now (a PostgreSQL
    database by its size on the server: its compressed dump is smaller)."""
    total = space.data_size("redis", ["/data/dump.rdb", f"/data/{fmt.AOF_DIR}"])
    for n in names:
        total += space.data_size(naming.service_name(n, "web"), ["/data"])
    return total + sum(pg.database_size(n) for n in pg.on_postgres(names))


def tenant_counts(partial: Path, names: list[str], log=print) -> dict:
    """Each configured tenant's keys in the backup's own RDB (a throwaway server reads it: the live one does no extra
    work), for the manifest's tenant sections: `restore WHOLE --tenant t` checks against them. Tenants with no key
    and no database in the backup are left out."""
    known = tenants.known_names()
    with tenant_keys.scratch(partial / fmt.REDIS_DIR, "the new backup's RDB") as scratch:
        counts = tenant_keys.counts_by_prefix(scratch, known, naming.key_prefix)
    sections = {n: {"keys": c["keys"], "expires": c["expires"]} for n, c in counts.items() if c["keys"] or n in names}
    log("backup: keys per tenant in the RDB: " + ", ".join(f"{n} {c['keys']}" for n, c in sections.items()))
    return sections


def create(keep: int = DEFAULT_KEEP, log=print) -> Path:
    log = timed(log)
    if keep < 1:
        raise OpsError(f"--keep must be at least 1 (got {keep}): the new backup itself counts")
    t0 = time.monotonic()
    old_umask = os.umask(0o077)  # private from the first byte: folders 0700, files 0600
    try:
        BACKUPS.mkdir(parents=True, exist_ok=True)
        with jn.operation("backup") as journal:
            fmt.sweep_partials(log)
            final = _create(journal, log)
            retention.prune_whole(keep, log)  # under the lock: never while a restore reads an old backup
    finally:
        os.umask(old_umask)
    log(f"backup: verified in {time.monotonic() - t0:.1f}s: {final}")
    return final


def _create(journal: jn.Journal, log) -> Path:
    client = redis_admin.operator(timeout=60)
    redis_admin.ping_or_explain(client)
    names = running_tenants()
    on_postgres = pg.on_postgres(names)
    pg.require_server(on_postgres, "backup")
    space.check_space(BACKUPS, expected_size(names), "backup")
    while (BACKUPS / (name := fmt.stamp())).exists() or (BACKUPS / f".{name}.partial").exists():
        time.sleep(0.2)  # one backup per second: the name is the UTC second it started
    partial = BACKUPS / f".{name}.partial"
    final = BACKUPS / name
    entry = journal.record("partial", path=str(partial))
    try:
        log(f"backup: writing {rel(final)}")
        partial.mkdir()
        # Tenant databases are independent of Redis: export them while Redis is being snapshotted. SQLite's from
        # the start; PostgreSQL's dumps right after BGSAVE began, so their snapshots are of about the RDB's moment
        # (at most PARALLEL_DUMPS at once: ops' role has that many connections to spare).
        sqlite_names = [n for n in names if n not in on_postgres]
        dumps = {}
        with ThreadPoolExecutor(max_workers=max(1, len(sqlite_names))) as pool, \
                ThreadPoolExecutor(max_workers=pg.PARALLEL_DUMPS) as pg_pool:
            exports = [pool.submit(export_tenant_db, n, partial, log) for n in sqlite_names]

            def start_dumps():
                for n in on_postgres:
                    dumps[n] = pg_pool.submit(pg.dump, n, partial / "tenants" / n, lambda m: log(f"backup: {m}"))
            try:
                meta = snapshot_redis(partial, journal, log, on_snapshot=start_dumps)
            finally:
                for export in [*exports, *dumps.values()]:
                    export.exception()  # wait for each; a failed one raises below
            for export in exports:
                export.result()
            meta["postgres"] = {n: {"file": fmt.postgres_dump_path(n), **dump.result()} for n, dump in dumps.items()}
        fmt.make_private(partial)
        fmt.write_manifest(partial, meta, names, sections=tenant_counts(partial, names, log))
        fault_point("verify")
        fmt.verify(partial, log)
        partial.rename(final)
        journal.forget(entry)
    except (OSError, redis.RedisError, OpsError) as exc:
        shutil.rmtree(partial, ignore_errors=True)
        journal.forget(entry)
        line = jn.failure_line(exc, partial)
        if not containers.is_running("redis"):
            line = f"Redis stopped during the backup ({line}): start it with `./invoke up`, then retry"
        _record_last("failed", name, line)
        raise OpsError(f"backup {name} failed: {line}; nothing was kept") from None
    except BaseException:  # Ctrl-C: nothing half-written stays either
        shutil.rmtree(partial, ignore_errors=True)
        journal.forget(entry)
        raise
    _record_last("ok", name)
    return final
