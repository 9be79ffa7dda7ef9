"""`invoke restore`: put a verified backup back, keeping the current data as backups/pre-restore-<stamp>/.

Order matters and is the point of this module:
  1. verify the backup completely (checksums, redis-check-rdb/aof, SQLite integrity) before touching anything;
  2. stop every tenant service, take Redis' key counts, stop Redis (its shutdown save makes the files final);
  3. copy the live data aside as a full, verified backup of its own (pre-restore-<stamp>);
  4. put back BOTH dump.rdb and appendonlydir/: with appendonly yes Redis loads only the AOF, so restoring
     the RDB alone would start an empty database whose next shutdown overwrites the restored RDB;
  5. start Redis, compare key counts with the manifest, and on mismatch roll back to the pre-restore copy;
  6. restart what was running.
"""
import json
import os
import time
from pathlib import Path

from deployment import naming
from deployment.instance import UIDS
from ops.config import tenants
from ops.config.envfile import rel
from ops.config.paths import BACKUPS, ROOT
from ops.core.errors import OpsError, timed
from ops.data import backup as bk
from ops.deploy import compose, containers, health, preflight, redis_admin

REDIS_VOLUME = naming.REDIS_DATA_VOLUME


def resolve(arg: str) -> Path:
    candidates = [Path(arg), BACKUPS / arg, ROOT / arg]
    for c in candidates:
        if c.is_dir():
            return c.resolve()
    raise OpsError(f"backup {arg!r} not found: give a folder name from {rel(BACKUPS)}/ "
                   f"(newest: {bk.complete_backups()[-1].name if bk.complete_backups() else 'none yet'})")


def tenants_with_data() -> list[str]:
    """Tenants that have ever run here (their data volume exists)."""
    return [n for n in tenants.known_names() if containers.volume_exists(naming.data_volume(n))]


def _redis_job(host_dir: Path, script: str) -> None:
    uid = str(UIDS["redis"])
    containers.volume_job(compose.image("redis"), uid, {containers.volume(REDIS_VOLUME): "/data", str(host_dir): "/backup"}, script)


def _tenant_job(name: str, host_dir: Path, script: str) -> None:
    uid = str(UIDS["app"])
    containers.ensure_volume(naming.data_volume(name))
    containers.volume_job(compose.image("app"), uid, {containers.volume(naming.data_volume(name)): "/data", str(host_dir): "/backup"}, script)


def _writable_by(path: Path, uid: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, uid, uid)


def save_current(dest: Path, space: dict, redis_version: str, tenant_names: list[str], log=print) -> None:
    """Copy the stopped deployment's data into dest as a complete backup (same format, verified)."""
    _writable_by(dest / "redis", UIDS["redis"])
    _redis_job(dest / "redis", "cd /data; for f in dump.rdb appendonlydir; do [ ! -e $f ] || cp -R $f /backup/; done")
    for name in tenant_names:
        _writable_by(dest / "tenants" / name, UIDS["app"])
        # The online backup API also folds in a WAL left by a killed process.
        _tenant_job(name, dest / "tenants" / name,
                    "[ ! -e /data/db.sqlite3 ] || python -c \"import sqlite3; s=sqlite3.connect('/data/db.sqlite3'); "
                    "d=sqlite3.connect('/backup/db.sqlite3'); s.backup(d); d.close(); s.close()\"")
    bk.write_manifest(dest, {"redis_version": redis_version, "keyspace": space}, tenant_names)
    log(f"restore: current data saved as {rel(dest)}")


def put_back(source: Path, manifest: dict, log=print) -> None:
    _redis_job(source / "redis", "cd /data && rm -rf appendonlydir dump.rdb temp-*.rdb "
                                 "&& cp -R /backup/appendonlydir /backup/dump.rdb /data/")
    log("restore: dump.rdb and appendonlydir/ put back")
    for name in manifest.get("tenants", []):
        src = source / "tenants" / name
        if (src / "db.sqlite3").exists():
            _tenant_job(name, src, "rm -f /data/db.sqlite3 /data/db.sqlite3-wal /data/db.sqlite3-shm "
                                   "&& cp /backup/db.sqlite3 /data/db.sqlite3")
            log(f"restore: tenant {name}: database put back")


def counts_match(expected: dict, actual: dict) -> str | None:
    """None when the live keyspace fits the manifest: persistent keys exact, keys with a TTL may have expired."""
    for db in sorted(set(expected) | set(actual)):
        e = expected.get(db, {"keys": 0, "expires": 0})
        a = actual.get(db, {"keys": 0, "expires": 0})
        if a["keys"] - a["expires"] != e["keys"] - e["expires"] or a["keys"] > e["keys"]:
            return f"{db}: {a['keys']} keys ({a['expires']} with TTL) after restore, manifest says {e['keys']} ({e['expires']})"
    return None


def _start_redis_and_count(log) -> dict:
    compose.run("up", "--detach", "redis")
    health.wait(["redis"], 300, log)
    client = redis_admin.operator(timeout=60)
    return bk.keyspace(client)


def restore(arg: str, assume_yes: bool, confirm, log=print) -> Path:
    t0 = time.monotonic()
    log = timed(log)
    source = resolve(arg)
    log(f"restore: verifying {source.name} before touching anything")
    manifest = bk.verify(source, log)
    unknown = [n for n in manifest.get("tenants", []) if n not in tenants.known_names()]
    if unknown:
        raise OpsError(f"backup {source.name} holds tenants {', '.join(unknown)} that are not configured here: "
                       f"add them with `./invoke tenant-add NAME` first")
    pg = [f for f in manifest["files"] if f.endswith("db.pgdump")]
    if pg:
        raise OpsError(f"backup {source.name} holds PostgreSQL dumps ({', '.join(pg)}): restore them with "
                       "pg_restore --clean into the tenant's DATABASE_URL; this task restores SQLite tenants only")
    if not assume_yes:
        confirm(f"Replace ALL Redis data and the databases of tenants {manifest.get('tenants') or 'none'} "
                f"with backup {source.name} ({manifest['created']})?")
    running = sorted(preflight.running_services())
    tenant_services = [s for s in running if naming.tenant_of(s)]
    if tenant_services:
        compose.run("stop", *tenant_services, profiles=compose.all_profiles())
    client = redis_admin.operator(timeout=60)
    redis_admin.ping_or_explain(client)
    live_space, version = bk.keyspace(client), client.info("server")["redis_version"]
    compose.run("stop", "redis")
    aside = BACKUPS / f"pre-restore-{bk.stamp()}"
    save_current(aside, live_space, version, tenants_with_data(), log)
    bk.verify(aside, log=lambda m: log(f"restore: pre-restore {m}"))
    put_back(source, manifest, log)
    actual = _start_redis_and_count(log)
    problem = counts_match(manifest["keyspace"], actual)
    if problem:
        log(f"restore: key counts do not match ({problem}); rolling back to {aside.name}")
        compose.run("stop", "redis")
        put_back(aside, json.loads((aside / "manifest.json").read_text()), log)
        _start_redis_and_count(log)
        _restart(tenant_services)
        raise OpsError(f"restore of {source.name} rolled back: {problem}; live data is as before (also kept in {rel(aside)})")
    log(f"restore: key counts match the manifest: {actual}")
    _restart(tenant_services)
    log(f"restore: {source.name} restored in {time.monotonic() - t0:.1f}s; previous data kept in {rel(aside)}")
    return aside


def _restart(services: list[str]) -> None:
    if services:
        compose.run("up", "--detach", *services, profiles=compose.all_profiles())
        health.wait(services, 300)
