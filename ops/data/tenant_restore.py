"""`invoke restore BACKUP --tenant t`: put back one tenant's keys and database; every other tenant keeps serving.

BACKUP is a whole backup (backups/<stamp>/: the tenant's keys are read from its RDB by a throwaway server of the
server image, ops/data/tenant_keys.py) or a one-tenant backup (backups/tenant-<t>/<stamp>/, an archive, a
pre-restore copy: its redis/keys.bin). Before anything changes it refuses, in one line: an unknown tenant, a tenant
the backup does not hold, a backup that does not verify (backup_format.verify: for a whole one also the server's
checkers), a tenant whose database moved between SQLite and PostgreSQL since, and keys that would not fit the
server's free memory (used_memory + their size > maxmemory). There is no per-tenant quota yet (issue 22): only the
server's maxmemory is checked.

Then, each step journaled (kind `tenant_restore`) before it starts:
  1. stop the tenant's services (web, workers, beat; not its metrics exporter, which only reads);
  2. keep its current data as a one-tenant backup, backups/tenant-<t>/pre-restore-<stamp>/ (written as .partial,
     verified, renamed: ops/data/tenant_backup.py);
  3. delete its keys (SCAN + UNLINK under its prefix);
  4. RESTORE ... REPLACE ABSTTL the backup's keys (types, values, absolute expiries);
  5. check the prefix's key count against what was restored (keys with a TTL may have expired meanwhile); a
     mismatch puts the pre-restore copy back the same way and says so;
  6. restore its database: the SQLite file onto its volume, or PostgreSQL's per-tenant restore
     (postgres_data.restore_tenant_database, rows counted against the manifest);
  7. start the services that were running and wait until they are healthy.
Messages queued or unacknowledged in the restored keys are delivered again: the output says how many.
Nothing server-wide happens (no CLIENT PAUSE, no restart, no FLUSH). A failure rolls back at once; a run killed
outright is finished by `./invoke recover` (steps 3-6 again from the backup: each replaces what is there) or, with
--rollback, undone from the pre-restore copy.
"""
import contextlib
import shutil
import subprocess
import time
from pathlib import Path

import redis
from deployment import naming
from deployment.instance import UIDS
from ops.config import tenants
from ops.config.envfile import rel
from ops.config.paths import BACKUPS, ROOT
from ops.core.errors import OpsError, timed
from ops.data import backup_format as fmt
from ops.data import journal as jn
from ops.data import postgres_data as pg
from ops.data import restore as whole
from ops.data import tenant_backup, tenant_keys
from ops.data.journal import fault_point
from ops.deploy import compose, containers, health, preflight, redis_admin

KIND = "tenant_restore"  # its journal entry
STOPPING, SAVING, DELETING = "stopping its services", "saving its current data aside", "deleting its keys"
RESTORING, CHECKING, DATABASE = "restoring the backup's keys", "checking the key count", "restoring its database"
STARTING = "starting its services"


def resolve(arg: str, name: str) -> Path:
    """A backup by path or folder name: backups/<arg>, backups/tenant-<t>/<arg>, backups/archives/<arg>."""
    for c in (Path(arg), BACKUPS / arg, tenant_backup.default_parent(name) / arg, BACKUPS / fmt.ARCHIVES / arg,
              ROOT / arg):
        if c.is_dir():
            return c.resolve()
    own = sorted(p.name for p in tenant_backup.default_parent(name).glob("[0-9]*")) \
        if tenant_backup.default_parent(name).is_dir() else []
    whole_ones = fmt.complete_backups() if BACKUPS.is_dir() else []
    raise OpsError(f"backup {arg!r} not found: give a folder of {rel(BACKUPS)}/ (newest whole: "
                   f"{whole_ones[-1].name if whole_ones else 'none yet'}) or of "
                   f"{rel(tenant_backup.default_parent(name))}/ (newest: {own[-1] if own else 'none yet'})")


def section_of(source: Path, manifest: dict, name: str) -> dict:
    """The backup's section of tenant `name` ({keys, expires, database, files}: counts None in a format-1 or -2
    whole backup); one line when the backup does not hold the tenant."""
    sections = fmt.tenant_sections_of(manifest)
    if sections is not None and name in sections:
        return sections[name]
    if fmt.scope_of(manifest) == fmt.WHOLE and name in manifest.get("tenants", []):  # older format, or no counts
        files = sorted(f for f in manifest["files"] if f.startswith(f"tenants/{name}/"))
        kind = ("postgres" if fmt.postgres_dump_path(name) in files else
                "sqlite" if f"tenants/{name}/db.sqlite3" in files else None)
        return {"keys": None, "expires": None, "database": kind, "files": files}
    held = ", ".join(sorted(sections or manifest.get("tenants", []))) or "none"
    raise OpsError(f"tenant {name} is not in backup {source.name} (it holds: {held}): pick a backup that holds it")


def _check_database_kind(source: Path, section: dict, name: str) -> None:
    now = "postgres" if pg.on_postgres([name]) else "sqlite"
    if section["database"] not in (None, now):
        raise OpsError(f"backup {source.name} holds tenant {name}'s {section['database']} database, but the tenant is "
                       f"on {now} now (DATABASE in {rel(tenants.env_path(name))}): change it back and run "
                       f"`./invoke up --tenant {name}` first, or pick another backup")
    if now == "postgres":
        pg.require_server([name], "restore")


@contextlib.contextmanager
def key_source(source: Path, manifest: dict, section: dict, name: str):
    """(a function returning a fresh iterator of the backup's records of the tenant, their counts {keys, expires,
    bytes}). A whole backup's RDB is loaded in a throwaway server for the duration; its counts for the tenant must
    fit the manifest's section (a key with a TTL may have expired since)."""
    if fmt.scope_of(manifest) == fmt.TENANT:
        path = source / fmt.KEYS_FILE
        yield (lambda: fmt.read_keys(path, source.name),
               {"keys": section["keys"], "expires": section["expires"], "bytes": path.stat().st_size})
        return
    prefix = naming.key_prefix(name)
    with tenant_keys.scratch(source / fmt.REDIS_DIR, f"backup {source.name}") as scratch:
        found = tenant_keys.counts_by_prefix(scratch, [name], naming.key_prefix)[name]
        if section["keys"] is not None and (found["keys"] > section["keys"] or found["keys"] - found["expires"]
                                            != section["keys"] - section["expires"]):
            raise OpsError(f"backup {source.name} is corrupt: its RDB holds {found['keys']} keys of tenant {name} "
                           f"({found['expires']} with a TTL), manifest.json says {section['keys']} "
                           f"({section['expires']}); pick another backup")
        yield (lambda: tenant_keys.records(scratch, prefix), found)


def check_memory(client: redis.Redis, size: int, name: str) -> None:
    """Refuse when the restored keys would not fit: used_memory + their size > maxmemory (when maxmemory is set)."""
    info = client.info("memory")
    limit, used = int(info.get("maxmemory") or 0), int(info["used_memory"])
    if limit and used + size > limit:
        raise OpsError(f"tenant {name}'s keys in the backup take about {size / 2**20:.1f} MiB and the server has "
                       f"{max(limit - used, 0) / 2**20:.1f} MiB free of its maxmemory {limit / 2**20:.0f} MiB: free "
                       "memory (or raise maxmemory in redis/redis.conf) first; nothing was changed")


def tenant_services(name: str) -> list[str]:
    """The tenant's running services that write or serve (web, workers, beat), not its read-only metrics exporter."""
    return sorted(s for s in preflight.running_services()
                  if naming.tenant_of(s) == name and s != naming.metrics_service(name))


def _stop(services: list[str]) -> None:
    if services:
        compose.run("stop", *services, profiles=compose.all_profiles())


def _start(services: list[str], log=print) -> None:
    # --no-deps: Redis and PostgreSQL are running; nothing but the tenant's own services may be (re)created.
    if services:
        compose.run("up", "--detach", "--no-deps", *services, profiles=compose.all_profiles())
        health.wait(services, 300, log)


def _put_sqlite(name: str, src: Path) -> None:
    """The backup's db.sqlite3 onto the tenant's volume (as root in the job: backups are root's, 0600; then chown)."""
    uid = UIDS["app"]
    containers.ensure_volume(naming.data_volume(name))
    mounts = {containers.volume(naming.data_volume(name)): "/data", str(src.resolve()): "/backup"}
    containers.volume_job(compose.image("app"), "0", mounts,
                          "rm -f /data/db.sqlite3 /data/db.sqlite3-wal /data/db.sqlite3-shm "
                          f"&& cp /backup/db.sqlite3 /data/db.sqlite3 && chown {uid}:{uid} /data/db.sqlite3")


def _database(source: Path, manifest: dict, section: dict, name: str, log) -> str:
    if section["database"] == "sqlite":
        _put_sqlite(name, source / "tenants" / name)
        return "SQLite database put back"
    if section["database"] == "postgres":
        entry = fmt.postgres_of(manifest, source.name)[name]
        counts = pg.restore_tenant_database(name, source / entry["file"], entry["tables"], log)
        return f"PostgreSQL database restored ({sum(counts.values())} rows, as recorded)"
    return "the backup holds no database of the tenant: its database was left as it is"


def count_problem(restored: dict, live: int) -> str | None:
    """None when the prefix holds what was restored: exactly, but for keys with a TTL that may have expired since."""
    if live > restored["keys"] or live < restored["keys"] - restored["expires"]:
        return (f"the prefix holds {live} keys after the restore, {restored['keys']} were restored "
                f"({restored['expires']} with a TTL)")
    return None


def apply(client: redis.Redis, source: Path, manifest: dict, name: str, step, *, log=print,
          opened=None) -> tuple[dict, str | None]:
    """Steps 3-6 from `source` (the backup, or the pre-restore copy): returns (restored counts, a count mismatch
    or None; the database is restored only when the counts match). step(text) journals each step first; opened:
    the backup's key_source() when the caller has it open already (a whole backup's RDB is then loaded once)."""
    section = section_of(source, manifest, name)
    prefix = naming.key_prefix(name)
    with contextlib.nullcontext(opened) if opened else key_source(source, manifest, section, name) as (records, _):
        step(DELETING)
        fault_point("deleting-keys")
        removed = redis_admin.unlink_matching(client, tenant_keys.pattern(prefix))
        log(f"restore: tenant {name}: {removed} current keys deleted")
        step(RESTORING)
        restored = tenant_keys.restore_records(client, records(), lambda m: log(f"restore: tenant {name}: {m}"))
    step(CHECKING)
    fault_point("checking-keys")
    live = tenant_keys.count(client, prefix)
    problem = count_problem(restored, live)
    if problem:
        return restored, problem
    log(f"restore: tenant {name}: {restored['keys']} keys restored, the prefix holds {live}")
    step(DATABASE)
    fault_point("restoring-database")
    log(f"restore: tenant {name}: {_database(source, manifest, section, name, log)}")
    return restored, None


def tasks_again(client: redis.Redis, name: str) -> tuple[int, int]:
    """(messages in the tenant's queues, entries in its unacked hash): what its workers deliver again."""
    queued = sum(client.llen(k) for k in tenants.declared(name).spec.queue_keys())
    return queued, client.hlen(naming.unacked_key(name))


def restore(arg: str, name: str, assume_yes: bool, confirm, log=print) -> Path:
    """Restore tenant `name` from backup `arg` (see the module docstring); returns the pre-restore copy's folder."""
    t0 = time.monotonic()
    log = timed(log)
    tenant_backup.require_known(name)
    source = resolve(arg, name)
    whole.check_private(source)
    log(f"restore: verifying {source.name} before touching anything")
    manifest = fmt.verify(source, log)
    section = section_of(source, manifest, name)
    _check_database_kind(source, section, name)
    client = redis_admin.operator(timeout=60)
    redis_admin.ping_or_explain(client)
    with key_source(source, manifest, section, name) as opened:
        check_memory(client, opened[1]["bytes"], name)
        if not assume_yes:
            confirm(f"Replace tenant {name}'s keys and database with backup {source.name} ({manifest['created']}: "
                    f"{opened[1]['keys']} keys)? Other tenants are not touched.")
        with jn.operation("tenant-restore") as journal:
            fmt.sweep_partials(log)
            return _restore(journal, client, source, manifest, name, log=log, t0=t0, opened=opened)


def _restore(journal: jn.Journal, client, source: Path, manifest: dict, name: str, *, log, t0: float,
             opened) -> Path:
    services = tenant_services(name)
    stamp = fmt.stamp()
    parent = tenant_backup.default_parent(name)
    aside, partial = parent / f"pre-restore-{stamp}", parent / f".pre-restore-{stamp}.partial"
    state = journal.record(KIND, tenant=name, backup=str(source), step=STOPPING, stopped=services, aside=str(aside),
                           aside_partial=str(partial))

    def step(text):
        journal.update(state, step=text)
    try:
        _stop(services)
        log(f"restore: tenant {name}: stopped {', '.join(services) or 'nothing (none was running)'}")
        fault_point("stopped-tenant")
        step(SAVING)
        tenant_backup.write(name, parent, log=log, folder=aside.name)
        fault_point("saved-tenant")
        restored, problem = apply(client, source, manifest, name, step, log=log, opened=opened)
        if problem:
            log(f"restore: tenant {name}: {problem}; rolling back to {aside.name}")
            _, again = apply(client, aside, fmt.read_manifest(aside), name, step, log=log)
            step(STARTING)
            _start(services, log)
            journal.forget(state)
            raise OpsError(f"restore of tenant {name} from {source.name} rolled back: {problem}; its data is as "
                           f"before{' (but: ' + again + ')' if again else ''} (also kept in {rel(aside)})")
        queued, unacked = tasks_again(client, name)
        step(STARTING)
        fault_point("starting-tenant")
        _start(services, log)
        journal.forget(state)
    except (OSError, redis.RedisError, OpsError, subprocess.CalledProcessError) as exc:
        if state not in journal.entries:
            raise
        _fail(journal, state, source, name, jn.failure_line(exc, partial, "restore"), log)
    log(f"restore: tenant {name}: {queued + unacked} task(s) will run again ({queued} queued, {unacked} "
        "unacknowledged in the restored data)")
    log(f"restore: tenant {name} restored from {source.name} in {time.monotonic() - t0:.1f}s: {restored['keys']} "
        f"keys; its previous data is kept in {rel(aside)}")
    return aside


def _fail(journal: jn.Journal, state: dict, source: Path, name: str, reason: str, log) -> None:
    """A step failed: keep restored, checked data whose only failure was the start; else roll back; one line."""
    if state["step"] == STARTING:
        journal.forget(state)
        raise OpsError(f"restore of tenant {name} from {source.name}: the data is restored and checked, but starting "
                       f"its services failed ({reason}): run `./invoke up --tenant {name}`") from None
    try:
        done = recover(journal, state, rollback=True, log=log)
    except (OSError, redis.RedisError, OpsError, subprocess.CalledProcessError) as again:
        raise OpsError(f"restore of tenant {name} from {source.name} failed while {state['step']}: {reason}; rolling "
                       f"back failed too ({jn.one_line(again)}): run `./invoke recover`") from None
    raise OpsError(f"restore of tenant {name} from {source.name} failed: {reason}; {done[-1]}") from None


def recover(journal: jn.Journal, state: dict, rollback: bool, log=print) -> list[str]:
    """Finish an interrupted tenant restore (or roll it back); returns what was done, one line each.

    Before the pre-restore copy is complete nothing of the tenant was changed: its unfinished folder goes and the
    stopped services start again. After it, steps 3-6 are done again from the backup (each replaces what is there),
    or with rollback from the pre-restore copy."""
    name, source = state["tenant"], Path(state["backup"])
    aside, partial, services = Path(state["aside"]), Path(state["aside_partial"]), state.get("stopped", [])
    lines = [f"the restore of tenant {name} from {source.name} had reached: {state['step']}"]
    shutil.rmtree(partial, ignore_errors=True)
    client = redis_admin.operator(timeout=60)
    redis_admin.ping_or_explain(client)

    def step(text):
        journal.update(state, step=text)
    if not aside.is_dir():
        _start(services, log)
        lines.append(f"nothing of tenant {name} had been changed yet: started its {len(services)} service(s) again; "
                     f"nothing was restored (run `./invoke restore {source.name} --tenant {name}` again)")
    elif state["step"] == STARTING and not rollback:
        _start(services, log)
        lines.append(f"tenant {name}'s data from {source.name} was already in place and checked: started its "
                     f"{len(services)} service(s)")
    else:
        target = aside
        if not rollback:
            try:
                whole.check_private(source)
                fmt.verify(source, log)
                target = source
            except OpsError as exc:
                lines.append(f"cannot finish with {source.name} ({exc}): rolling back instead")
        if target == source:
            _, problem = apply(client, source, fmt.read_manifest(source), name, step, log=log)
            if problem:
                lines.append(f"{problem}: rolling back instead")
                target = aside
        if target == aside:
            _, problem = apply(client, aside, fmt.read_manifest(aside), name, lambda t: step(f"rolling back: {t}"),
                               log=log)
            if problem:
                raise OpsError(f"rolling tenant {name} back from {rel(aside)} failed: {problem}")
            lines.append(f"rolled back: tenant {name}'s data from before the restore is live again "
                         f"(kept in {rel(aside)})")
        else:
            queued, unacked = tasks_again(client, name)
            lines.append(f"finished: tenant {name} is restored from {source.name} and its key count matches; "
                         f"{queued + unacked} task(s) will run again (previous data in {rel(aside)})")
        step(STARTING)
        _start(services, log)
    journal.forget(state)
    return lines
