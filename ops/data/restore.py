"""`invoke restore`: put a verified backup back, keeping the current data as backups/pre-restore-<stamp>/.

Order matters and is the point of this module:
  1. refuse a backup others could have changed (group/other writable, or a foreign owner), then verify it
     completely (checksums, the server image's valkey-check-rdb/aof, SQLite integrity, each PostgreSQL dump
     read whole by the PostgreSQL image's pg_restore) and check free space, before touching anything;
  2. stop every tenant service, take Redis' key counts, stop Redis (its shutdown save makes the files final);
  3. copy the live data aside as a full, verified, private backup of its own (pre-restore-<stamp>), with a
     pg_dump of each PostgreSQL database the backup replaces;
  4. put back BOTH dump.rdb and appendonlydir/: with appendonly yes Redis loads only the AOF, so restoring
     the RDB alone would start an empty database whose next shutdown overwrites the restored RDB; each
     SQLite file; each PostgreSQL tenant's database dropped, provisioned empty and pg_restore'd, its tables'
     exact row counts checked against the manifest (ops/data/postgres_data.restore_tenant_database);
  5. start Redis, compare key counts with the manifest, and on mismatch roll back to the pre-restore copy;
  6. restart what was running.
Each step is journaled (ops/data/journal.py) before it starts. A restore that fails is rolled back at
once; one killed outright is finished (or, with --rollback, undone) by `./invoke recover`, and until
then `up` refuses to start tenants on the half-restored Redis.
"""
import json
import os
import shutil
import stat
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
from ops.data import space
from ops.data.journal import fault_point
from ops.deploy import compose, connlimit, containers, health, preflight, redis_admin

REDIS_VOLUME = naming.REDIS_DATA_VOLUME


def resolve(arg: str) -> Path:
    candidates = [Path(arg), BACKUPS / arg, ROOT / arg]
    for c in candidates:
        if c.is_dir():
            return c.resolve()
    complete = fmt.complete_backups()
    raise OpsError(f"backup {arg!r} not found: give a folder name from {rel(BACKUPS)}/ "
                   f"(newest: {complete[-1].name if complete else 'none yet'})")


def tenants_with_data() -> list[str]:
    """Tenants that have ever run here (their data volume exists)."""
    return [n for n in tenants.known_names() if containers.volume_exists(naming.data_volume(n))]


def check_private(source: Path) -> None:
    """Refuse, in one line, a backup that someone other than root or the containers could have changed."""
    allowed = {0, *UIDS.values()}
    for p in [source, *source.rglob("*")]:
        st = p.lstat()
        where = "." if p == source else str(p.relative_to(source))
        if stat.S_ISLNK(st.st_mode):
            raise OpsError(f"backup {source.name} is not safe to restore: {where} is a symbolic link; "
                           "backups hold plain files only: pick another backup")
        if st.st_mode & 0o022:
            raise OpsError(f"backup {source.name} is not safe to restore: {where} is writable by group or others "
                           f"(mode {stat.S_IMODE(st.st_mode):04o}), so anyone could have changed it; if you trust "
                           f"its content, `chmod -R go-w {source}` and retry")
        if st.st_uid not in allowed:
            raise OpsError(f"backup {source.name} is not safe to restore: {where} is owned by uid {st.st_uid}, not "
                           f"root or a container user ({', '.join(map(str, sorted(allowed)))}); if you trust it, "
                           f"`chown -R root:root {source}` and retry")


def _redis_job(host_dir: Path, script: str, user: str | None = None) -> None:
    uid = user or str(UIDS["redis"])
    mounts = {containers.volume(REDIS_VOLUME): "/data", str(host_dir): "/backup"}
    containers.volume_job(compose.image("redis"), uid, mounts, script)


def _tenant_job(name: str, host_dir: Path, script: str, user: str | None = None) -> None:
    uid = user or str(UIDS["app"])
    containers.ensure_volume(naming.data_volume(name))
    mounts = {containers.volume(naming.data_volume(name)): "/data", str(host_dir): "/backup"}
    containers.volume_job(compose.image("app"), uid, mounts, script)


def _writable_by(path: Path, uid: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, uid, uid)


def save_current(dest: Path, keys: dict, server: dict, tenant_names: list[str], log=print,
                 postgres_names=()) -> None:
    """Copy the stopped deployment's data into dest as a complete backup (same format, verified).

    server: fmt.server_meta() of the server that wrote the data, taken before it stopped. postgres_names: the
    PostgreSQL tenants whose databases the restore replaces, each dumped like a backup does (the server runs on)."""
    _writable_by(dest / "redis", UIDS["redis"])
    _redis_job(dest / "redis", "cd /data; for f in dump.rdb appendonlydir; do [ ! -e $f ] || cp -R $f /backup/; done")
    fault_point("saving-current")
    for name in tenant_names:
        _writable_by(dest / "tenants" / name, UIDS["app"])
        # The online backup API also folds in a WAL left by a killed process.
        _tenant_job(name, dest / "tenants" / name,
                    "[ ! -e /data/db.sqlite3 ] || python -c \"import sqlite3; s=sqlite3.connect('/data/db.sqlite3'); "
                    "d=sqlite3.connect('/backup/db.sqlite3'); s.backup(d); d.close(); s.close()\"")
    databases = {n: {"file": fmt.postgres_dump_path(n), **pg.dump(n, dest / "tenants" / n,
                                                                   lambda m: log(f"restore: current {m}"))}
                 for n in postgres_names}
    # The jobs wrote as the container UIDs with their own umask: make the copy private like any backup.
    fmt.make_private(dest)
    fmt.write_manifest(dest, {**server, "keyspace": keys, "postgres": databases},
                       sorted({*tenant_names, *postgres_names}))
    log(f"restore: current data saved as {rel(dest)}")


def put_back(source: Path, manifest: dict, log=print, step=None) -> None:
    """Copy a backup's files into the volumes (as root in the job: backups are root's, 0600; then chown), and
    each PostgreSQL tenant's dump into its database. step(text), when given, journals each database's turn."""
    redis_uid, app_uid = UIDS["redis"], UIDS["app"]
    _redis_job(source / "redis", "cd /data && rm -rf appendonlydir dump.rdb temp-*.rdb "
                                 "&& cp -R /backup/appendonlydir /backup/dump.rdb /data/ "
                                 f"&& chown -R {redis_uid}:{redis_uid} appendonlydir dump.rdb", user="0")
    log("restore: dump.rdb and appendonlydir/ put back")
    fault_point("putting-back")
    for name in manifest.get("tenants", []):
        src = source / "tenants" / name
        if (src / "db.sqlite3").exists():
            _tenant_job(name, src, "rm -f /data/db.sqlite3 /data/db.sqlite3-wal /data/db.sqlite3-shm "
                                   "&& cp /backup/db.sqlite3 /data/db.sqlite3 "
                                   f"&& chown {app_uid}:{app_uid} /data/db.sqlite3",
                        user="0")
            log(f"restore: tenant {name}: database put back")
    for name, entry in fmt.postgres_of(manifest, source.name).items():
        if step is not None:
            step(f"restoring tenant {name}'s PostgreSQL database")
        fault_point("restoring-postgres")
        pg.restore_tenant_database(name, source / entry["file"], entry["tables"], log)


def counts_match(expected: dict, actual: dict) -> str | None:
    """None when the live keyspace fits the manifest: persistent keys exact, keys with a TTL may have expired."""
    for db in sorted(set(expected) | set(actual)):
        e = expected.get(db, {"keys": 0, "expires": 0})
        a = actual.get(db, {"keys": 0, "expires": 0})
        if a["keys"] - a["expires"] != e["keys"] - e["expires"] or a["keys"] > e["keys"]:
            return (f"{db}: {a['keys']} keys ({a['expires']} with TTL) after restore, "
                    f"manifest says {e['keys']} ({e['expires']})")
    return None


def _start_redis_and_count(log) -> dict:
    compose.run("up", "--detach", "redis")
    health.wait(["redis"], 300, log)
    connlimit.apply(tenants.known_names(), log=lambda m: log(f"restore: {m}"))  # a new container: new namespace
    client = redis_admin.operator(timeout=60)
    return fmt.keyspace(client)


def _check_space(source: Path, manifest: dict, tenant_services: list[str]) -> None:
    """The pre-restore copy goes to the backups folder: it must hold the live data, with a margin."""
    live = space.data_size("redis", ["/data/dump.rdb", f"/data/{fmt.AOF_DIR}"])
    running_webs = [s for s in tenant_services if s.endswith("-web")]
    live += sum(space.data_size(s, ["/data"]) for s in running_webs)
    # Tenants not running now: their size in the backup is the best estimate there is without a job.
    live += sum(m["size"] for f, m in manifest["files"].items() if f.startswith("tenants/"))
    space.check_space(BACKUPS, live, f"restore of {source.name} (the pre-restore copy of the live data)")


def restore(arg: str, assume_yes: bool, confirm, log=print) -> Path:
    t0 = time.monotonic()
    log = timed(log)
    source = resolve(arg)
    check_private(source)
    log(f"restore: verifying {source.name} before touching anything")
    manifest = fmt.verify(source, log)
    if fmt.scope_of(manifest) == fmt.TENANT:
        held = ", ".join(manifest.get("tenants", []))
        raise OpsError(f"backup {source.name} is a one-tenant backup (of {held}): restore it with "
                       f"`./invoke restore {source.name} --tenant {held}`")
    unknown = [n for n in manifest.get("tenants", []) if n not in tenants.known_names()]
    if unknown:
        raise OpsError(f"backup {source.name} holds tenants {', '.join(unknown)} that are not configured here: "
                       f"add them with `./invoke tenant-add NAME` first")
    on_postgres = list(fmt.postgres_of(manifest, source.name))
    moved = [n for n in on_postgres if n not in pg.on_postgres(on_postgres)]
    if moved:
        raise OpsError(f"backup {source.name} holds tenant {moved[0]}'s PostgreSQL database, but that tenant is on "
                       f"SQLite now (DATABASE in {rel(tenants.env_path(moved[0]))}): set DATABASE=postgres and run "
                       f"`./invoke up --tenant {moved[0]}` first, or pick another backup")
    pg.require_server(on_postgres, "restore")
    if not assume_yes:
        written = fmt.server_of(manifest)  # this release's `server`, or an older manifest's redis_version
        confirm(f"Replace ALL Redis data and the databases of tenants {manifest.get('tenants') or 'none'} "
                f"with backup {source.name} ({manifest['created']}, written by {written['name']} "
                f"{written['version']})?")
    old_umask = os.umask(0o077)  # the pre-restore copy is a backup too: private from its first byte
    try:
        with jn.operation("restore") as journal:
            return _restore(journal, source, manifest, log, t0)
    finally:
        os.umask(old_umask)


def _roll_back_mismatch(journal: jn.Journal, state: dict, source: Path, aside: Path, services: list[str], *,
                        problem: str, log) -> None:
    """Key counts do not fit the manifest: put the pre-restore copy back, restart, and say so in one line."""
    log(f"restore: key counts do not match ({problem}); rolling back to {aside.name}")
    _rollback(aside, log, lambda text: journal.update(state, step=f"rolling back: {text}"))
    journal.update(state, step="restarting the tenant services")
    _restart(services)
    journal.forget(state)
    raise OpsError(f"restore of {source.name} rolled back: {problem}; live data is as before "
                   f"(also kept in {rel(aside)})")


def _fail(journal: jn.Journal, state: dict, source: Path, reason: str, log) -> None:
    """A step failed: keep checked data whose only failure was the restart, else roll back; one line either way."""
    if state["step"] == "restarting the tenant services":  # the data is restored and checked: keep it
        journal.forget(state)
        raise OpsError(f"restore of {source.name}: the data is restored and its key counts match, but restarting "
                       f"the tenant services failed ({reason}): run `./invoke up`") from None
    try:
        done = recover(journal, state, rollback=True, log=log)
    except (OSError, redis.RedisError, OpsError, subprocess.CalledProcessError) as again:
        raise OpsError(f"restore of {source.name} failed while {state['step']}: {reason}; rolling back failed too "
                       f"({jn.one_line(again)}): run `./invoke recover`") from None
    raise OpsError(f"restore of {source.name} failed: {reason}; {done[-1]}") from None


def _restore(journal: jn.Journal, source: Path, manifest: dict, log, t0: float) -> Path:
    client = redis_admin.operator(timeout=60)
    redis_admin.ping_or_explain(client)
    running = sorted(preflight.running_services())
    tenant_services = [s for s in running if naming.tenant_of(s)]
    _check_space(source, manifest, tenant_services)
    on_postgres = list(fmt.postgres_of(manifest, source.name))
    stamp = fmt.stamp()
    aside, partial = BACKUPS / f"pre-restore-{stamp}", BACKUPS / f".pre-restore-{stamp}.partial"
    state = journal.record("restore", backup=str(source), step="stopping the tenant services", stopped=tenant_services,
                           aside=str(aside), aside_partial=str(partial))
    try:
        if tenant_services:
            compose.run("stop", *tenant_services, profiles=compose.all_profiles())
        fault_point("stopped-services")
        live_space, server = fmt.keyspace(client), fmt.server_meta(client.info("server"))
        journal.update(state, step="stopping Redis")
        compose.run("stop", "redis")
        fault_point("stopped-redis")
        journal.update(state, step="saving the current data aside")
        save_current(partial, live_space, server, tenants_with_data(), log, postgres_names=on_postgres)
        fmt.verify(partial, log=lambda m: log(f"restore: pre-restore {m}"))
        partial.rename(aside)
        journal.update(state, step="putting the backup back")
        put_back(source, manifest, log, step=lambda text: journal.update(state, step=text))
        journal.update(state, step="checking key counts")
        actual = _start_redis_and_count(log)
        fault_point("checking")
        problem = counts_match(manifest["keyspace"], actual)
        if problem:
            _roll_back_mismatch(journal, state, source, aside, tenant_services, problem=problem, log=log)
        log(f"restore: key counts match the manifest: {actual}")
        journal.update(state, step="restarting the tenant services")
        fault_point("restarting")
        _restart(tenant_services)
        journal.forget(state)
    except (OSError, redis.RedisError, OpsError, subprocess.CalledProcessError) as exc:
        if state not in journal.entries:
            raise  # the rollback above already finished
        _fail(journal, state, source, jn.failure_line(exc, partial, "restore"), log)
    log(f"restore: {source.name} restored in {time.monotonic() - t0:.1f}s; previous data kept in {rel(aside)}")
    return aside


def _rollback(aside: Path, log, step=None) -> None:
    compose.run("stop", "redis")
    put_back(aside, json.loads((aside / "manifest.json").read_text()), log, step)
    _start_redis_and_count(log)


def recover(journal: jn.Journal, state: dict, rollback: bool, log=print) -> list[str]:
    """Finish an interrupted restore (or roll it back); returns what was done, one line each.

    Before the pre-restore copy is complete no live data was changed: its unfinished folder goes, Redis and
    the stopped services start again. After it, the restore is done again from the start of the
    put-back (each step may be repeated), or with rollback the pre-restore copy is put back instead.
    """
    source, aside, partial = Path(state["backup"]), Path(state["aside"]), Path(state["aside_partial"])
    services, step = state.get("stopped", []), state["step"]
    lines = [f"the restore of {source.name} had reached: {step}"]
    shutil.rmtree(partial, ignore_errors=True)
    if not aside.is_dir():
        _start_redis_and_count(log)
        _restart(services)
        lines.append(f"no live data had been changed yet: started Redis and {len(services)} tenant service(s) again; "
                     f"nothing was restored (run `./invoke restore {source.name}` again)")
    elif step == "restarting the tenant services" and not rollback:
        _restart(services)
        lines.append(f"the data of {source.name} was already in place and checked: "
                     f"restarted {len(services)} tenant service(s)")
    else:
        target, manifest = aside, None
        if not rollback:
            try:
                check_private(source)
                manifest = fmt.verify(source, log)
                target = source
            except OpsError as exc:
                lines.append(f"cannot finish with {source.name} ({exc}): rolling back instead")
        if target == source:
            compose.run("stop", "redis")
            put_back(source, manifest, log, lambda text: journal.update(state, step=text))
            problem = counts_match(manifest["keyspace"], _start_redis_and_count(log))
            if problem:
                lines.append(f"key counts do not match ({problem}): rolling back instead")
                target = aside
        if target == aside:
            _rollback(aside, log, lambda text: journal.update(state, step=f"rolling back: {text}"))
            lines.append(f"rolled back: the data from before the restore is live again (kept in {rel(aside)})")
        else:
            lines.append(f"finished: {source.name} is restored and its key counts match "
                         f"(previous data in {rel(aside)})")
        _restart(services)
    journal.forget(state)
    return lines


def _restart(services: list[str]) -> None:
    if services:
        compose.run("up", "--detach", *services, profiles=compose.all_profiles())
        health.wait(services, 300)
