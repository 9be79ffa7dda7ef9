"""`invoke backup --tenant t`: a verified backup of one tenant, in the backup format's tenant scope.

backups/tenant-<t>/<stamp>/ (or under another parent, as <t>-<stamp>/: backups/archives/ holds removed tenants')
holds redis/keys.bin (every key under the tenant's prefix, DUMP payload and absolute expiry: ops/data/tenant_keys.py)
and its database (SQLite's online backup through its running web, or through a job on its volume when it is stopped;
a PostgreSQL tenant's pg_dump), with a manifest of the same format as whole backups (ops/data/backup_format.py).
Written as .<name>.partial, verified (checksums, the keys file read whole against its count, SQLite integrity, the
dump read whole), then renamed. Nothing server-wide happens: no write pause, no BGSAVE, other tenants never notice.

The keys are read page by page while the tenant runs, so a key it changes during the copy is saved as it was either
before or after; stop its services first (restore's pre-restore copy does) for one instant. Its database is a
snapshot of its own moment, taken after the keys.

Called by other operations (restore's pre-restore copy, tenant removal's archive) inside their own journaled
operation: it then works under their lock (the journal names this process) and a killed run's .partial folder is
swept by the next operation.
"""
import contextlib
import os
import shutil
import time
from pathlib import Path

import redis
from deployment import naming
from deployment.instance import UIDS
from ops.config import tenants
from ops.config.envfile import rel
from ops.config.paths import BACKUPS
from ops.core.errors import OpsError, timed
from ops.data import backup as whole
from ops.data import backup_format as fmt
from ops.data import journal as jn
from ops.data import postgres_data as pg
from ops.data import space, tenant_keys
from ops.data.journal import fault_point
from ops.deploy import compose, containers, redis_admin


def default_parent(name: str) -> Path:
    return BACKUPS / f"{fmt.TENANT_DIR_PREFIX}{name}"


def require_known(name: str) -> None:
    if name not in tenants.known_names():
        known = ", ".join(tenants.known_names()) or "none"
        where = rel(tenants.env_path(name)) if naming.is_valid_tenant_name(name) else "env file for that name"
        raise OpsError(f"unknown tenant {name!r}: there is no {where} (tenants here: {known}); check the name")


@contextlib.contextmanager
def _operation():
    """The instance's lock and a journal; or, when this process already runs a journaled operation (a restore's
    pre-restore copy, a removal's archive), that one's lock (its journal is not ours to write)."""
    left = jn.load()
    if left is not None and left.get("pid") == os.getpid():
        yield None
        return
    with jn.operation("backup") as journal:
        fmt.sweep_partials()
        yield journal


def create(name: str, parent: Path | None = None, log=print) -> Path:
    """A verified one-tenant backup of `name` under parent (default backups/tenant-<name>/); returns its folder."""
    require_known(name)
    old_umask = os.umask(0o077)  # private from the first byte, like every backup
    try:
        with _operation() as journal:
            return write(name, parent, log=timed(log), journal=journal)
    finally:
        os.umask(old_umask)


def _sqlite_offline(name: str, dest: Path) -> None:
    """SQLite's online backup of a stopped tenant's database, by a job on its volume (also folds in a WAL)."""
    dest.mkdir(parents=True, exist_ok=True)
    os.chown(dest, UIDS["app"], UIDS["app"])
    mounts = {containers.volume(naming.data_volume(name)): "/data", str(dest): "/backup"}
    containers.volume_job(compose.image("app"), str(UIDS["app"]), mounts,
                          "[ ! -e /data/db.sqlite3 ] || python -c \"import sqlite3; "
                          "s=sqlite3.connect('/data/db.sqlite3'); d=sqlite3.connect('/backup/db.sqlite3'); "
                          "s.backup(d); d.close(); s.close()\"")
    os.chown(dest, 0, 0)
    if not any(dest.iterdir()):
        dest.rmdir()


def _database(name: str, partial: Path, log) -> dict:
    """The tenant's database into partial/tenants/<name>/; returns the manifest's postgres section."""
    if pg.on_postgres([name]):
        pg.require_server([name], "backup")
        return {name: {"file": fmt.postgres_dump_path(name),
                       **pg.dump(name, partial / "tenants" / name, lambda m: log(f"backup: {m}"))}}
    if containers.is_running(naming.service_name(name, "web")):
        whole.export_tenant_db(name, partial, log)
    elif containers.volume_exists(naming.data_volume(name)):
        _sqlite_offline(name, partial / "tenants" / name)
    return {}


def _folder_name(name: str, parent: Path, folder: str | None) -> str:
    if folder:
        return folder
    stamp = fmt.stamp()
    return stamp if parent == default_parent(name) else f"{name}-{stamp}"


def write(name: str, parent: Path | None = None, *, log=print, journal: jn.Journal | None = None,
          folder: str | None = None) -> Path:
    """Write and verify the backup (the caller holds the lock: create(), or an operation of its own); folder: the
    final folder's name (default: the stamp, or <name>-<stamp> under another parent than the tenant's own)."""
    client = redis_admin.operator(timeout=60)
    redis_admin.ping_or_explain(client)
    parent = parent or default_parent(name)
    parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    while (parent / (final_name := _folder_name(name, parent, folder))).exists():
        if folder:
            raise OpsError(f"{rel(parent / folder)} exists already: move it away, then retry")
        fault_point("same-second")  # one backup per tenant per second: the name is the UTC second it started
        time.sleep(0.2)
    final, partial = parent / final_name, parent / f".{final_name}.partial"
    db_size = pg.database_size(name) if pg.on_postgres([name]) and containers.is_running(naming.POSTGRES_SERVICE) \
        else (space.data_size(naming.service_name(name, "web"), ["/data"])
              if containers.is_running(naming.service_name(name, "web")) else 0)
    space.check_space(parent, db_size + int(client.info("memory")["used_memory"]) // 8,
                      f"backup of tenant {name}")
    entry = journal.record("partial", path=str(partial)) if journal else None
    try:
        log(f"backup: tenant {name}: writing {rel(final)}")
        (partial / fmt.REDIS_DIR).mkdir(parents=True)
        counts = fmt.write_keys(partial / fmt.KEYS_FILE, tenant_keys.records(client, naming.key_prefix(name)))
        log(f"backup: tenant {name}: {counts['keys']} keys ({counts['expires']} with a TTL, "
            f"{counts['bytes'] / 2**20:.1f} MiB)")
        fault_point("tenant-keys-saved")
        databases = _database(name, partial, log)
        fmt.make_private(partial)
        fmt.write_manifest(partial, {**fmt.server_meta(client.info("server")), "postgres": databases}, [name],
                           scope=fmt.TENANT, sections={name: counts})
        fmt.verify(partial, lambda m: log(f"backup: {m}"))
        partial.rename(final)
    except (OSError, redis.RedisError, OpsError) as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise OpsError(f"backup of tenant {name} failed: {jn.failure_line(exc, partial)}; nothing was kept") from None
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    finally:
        if entry is not None:
            journal.forget(entry)
    log(f"backup: tenant {name}: verified: {final}")
    return final
