"""`invoke backup`: a verified, self-describing copy of Redis (RDB + AOF) and every running tenant's database.

Layout of backups/<UTC timestamp>/:
  redis/dump.rdb, redis/appendonlydir/...   taken at one instant (client writes paused for the copy)
  tenants/<name>/db.sqlite3                  SQLite online backup of each running tenant
  manifest.json                              time, Redis version, keyspace, tenants, size + sha256 of every file
A backup is written under backups/.<stamp>.partial and renamed only after it verified. It is private:
written with umask 077 (folders 0700, files 0600), because a backup holds every tenant's data.

Interruptions (ops/data/journal.py): the paused AOF rewrites, the write pause and the .partial folder
are journaled before they happen, so a killed backup is undone by the next task or `./invoke recover`,
and leftover .partial folders are removed by the next backup. Free space is checked first; a full
disk, any OSError and Redis going away mid-backup end in one line, with nothing half-written kept.
"""
import contextlib
import datetime as dt
import errno
import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import redis
from deployment import naming
from ops.config import tenants
from ops.config.envfile import rel
from ops.config.paths import BACKUPS
from ops.core.errors import OpsError, timed
from ops.core.run import probe, wait_until
from ops.data import bgsave as bg
from ops.data import journal as jn
from ops.data.journal import fault_point
from ops.deploy import containers, redis_admin

FORMAT = 1
AOF_DIR = "appendonlydir"
AOF_MANIFEST = f"redis/{AOF_DIR}/appendonly.aof.manifest"
RDB = "redis/dump.rdb"
PAUSE_MS = 120_000  # writes resume by themselves after this, even if this process dies mid-copy
STAMP_RE = re.compile(r"^\d{8}T\d{6}Z$")
PARTIAL_RE = re.compile(r"^\.(pre-restore-)?\d{8}T\d{6}Z\.partial$")
DEFAULT_KEEP = 7
# Free space wanted beyond the measured data: the files may grow between the check and the copy.
SPACE_FACTOR, SPACE_EXTRA = 1.25, 8 << 20


def stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def keyspace(client) -> dict:
    return {db: {"keys": v["keys"], "expires": v["expires"]} for db, v in client.info("keyspace").items()}


def _wait_no_rewrite(client, timeout: float = 600) -> None:
    def pending():
        info = client.info("persistence")
        busy = info.get("aof_rewrite_in_progress") or info.get("aof_rewrite_scheduled")
        return "the running AOF rewrite" if busy else None
    wait_until(pending, timeout=timeout, what="backup", interval=0.1,
               fix="retry later or check `./invoke logs --service redis`")


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def data_size(service: str, paths: list[str]) -> int:
    """Bytes the paths take inside a running service's container (0 for missing ones)."""
    out = probe(["docker", "exec", containers.name(service), "du", "-sbc", *paths], what=f"measuring {service}'s data")
    rows = [line.split() for line in (out.stdout or "").splitlines()]
    return next((int(row[0]) for row in rows if row[1:] == ["total"] and row[0].isdigit()), 0)  # du -c's last line


def check_space(folder: Path, data_bytes: int, what: str) -> None:
    """Refuse in one line when `folder` has not room for data_bytes plus a margin."""
    need = int(data_bytes * SPACE_FACTOR) + SPACE_EXTRA
    free = shutil.disk_usage(folder).free
    if free < need:
        raise OpsError(f"{what} needs about {_mib(need)} free in {folder} (data {_mib(data_bytes)} + margin) but only "
                       f"{_mib(free)} is free: free space there (fewer backups: `./invoke backup --keep N`) and retry")


def make_private(path: Path) -> None:
    """Folders 0700, files 0600, owned by root: others can neither read nor change a backup."""
    for p in [path, *path.rglob("*")]:
        if p.is_symlink():
            continue
        os.chown(p, 0, 0)
        p.chmod(0o700 if p.is_dir() else 0o600)


def sweep_partials(log=None) -> list[str]:
    """Remove .partial folders no operation owns any more (call with the instance's lock held)."""
    lines = []
    if BACKUPS.is_dir():
        for p in sorted(BACKUPS.iterdir()):
            if PARTIAL_RE.match(p.name) and p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
                lines.append(f"removed the unfinished folder {rel(p)} that an interrupted run left")
    for line in lines:
        if log:
            log(f"backup: {line}")
    return lines


def _quietly(action) -> None:
    """Run a clean-up step whose failure must not hide the error that got us here (it stays journaled)."""
    with contextlib.suppress(redis.RedisError, OSError, OpsError):
        action()


def snapshot_redis(dest: Path, journal: jn.Journal, log=print) -> dict:
    """Copy a consistent RDB + AOF directory of the running Redis into dest/redis; returns metadata."""
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
            space = keyspace(client)
            started = bg.start(client, log=lambda m: log(f"backup: {m}"))
            fault_point("bgsave")
            size = containers.copy_out("redis", "/data", [AOF_DIR], dest / "redis")
            log(f"backup: copied {AOF_DIR}/ ({size / 2**20:.1f} MiB)")
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
        log(f"backup: Redis writes paused for {paused:.2f}s; keyspace {space}")
    finally:
        try:
            log(f"backup: automatic AOF rewrites: {journal.undo(setting)}")
        except (redis.RedisError, OSError, OpsError) as exc:
            log(f"backup: automatic AOF rewrites not restored yet ({jn._one_line(exc)}): the next task or "
                "`./invoke recover` does it")
    return {"redis_version": client.info("server")["redis_version"], "keyspace": space}


def running_tenants() -> list[str]:
    return [n for n in tenants.known_names() if containers.is_running(naming.service_name(n, "web"))]


def export_tenant_db(name: str, dest: Path, log=print) -> None:
    """The tenant database through its own web container (SQLite online backup API, or pg_dump)."""
    service = naming.service_name(name, "web")
    target = dest / "tenants" / name
    target.mkdir(parents=True, exist_ok=True)
    with open(target / "db.dump", "wb") as out:
        size = containers.exec_stream(service, ["python", "manage.py", "export_db"], out)
    with open(target / "db.dump", "rb") as dump:
        kind = "db.sqlite3" if dump.read(16) == b"SQLite format 3\x00" else "db.pgdump"
    (target / "db.dump").rename(target / kind)
    log(f"backup: tenant {name}: {kind} ({size / 2**20:.1f} MiB)")


def write_manifest(dest: Path, meta: dict, tenant_names: list[str]) -> dict:
    files = {}
    for path in sorted(p for p in dest.rglob("*") if p.is_file() and p.name != "manifest.json"):
        files[str(path.relative_to(dest))] = {"size": path.stat().st_size, "sha256": sha256(path)}
    manifest = {"format": FORMAT, "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                **meta, "tenants": tenant_names, "files": files}
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def run_checker(argv: list[str], what: str) -> None:
    if not shutil.which(argv[0]):
        raise OpsError(f"{argv[0]} is missing: install redis-tools (apt-get install -y redis-tools)")
    proc = probe(argv, what=what)
    out = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0 or ("OK" not in out and "is valid" not in out):
        raise OpsError(f"{what} failed {argv[0]}: {out.splitlines()[-1] if out else 'no output'}")


def _read_manifest(path: Path) -> dict:
    """The backup's manifest, checked for its form (one line naming what is wrong)."""
    where = path.name
    mpath = path / "manifest.json"
    if not path.is_dir():
        raise OpsError(f"backup {where} does not exist: list them with `ls {rel(BACKUPS)}`")
    try:
        manifest = json.loads(mpath.read_text())
        files = manifest["files"]
        well_formed = manifest["format"] == FORMAT and isinstance(files, dict)
    except (OSError, ValueError, KeyError, TypeError):
        well_formed = False
    if not well_formed:  # a real check, not an assert: asserts vanish under python -O
        raise OpsError(f"backup {where} is incomplete: manifest.json is missing or unreadable; pick another backup")
    for required in (RDB, AOF_MANIFEST):
        if required not in files:
            raise OpsError(f"backup {where} is incomplete: manifest lists no {required}; pick another backup")
    return manifest


def _check_files(path: Path, files: dict) -> None:
    """Every file the manifest lists is there, with its size and sha256."""
    where = path.name
    for member, meta in files.items():
        f = path / member
        if not f.is_file():
            raise OpsError(f"backup {where} is incomplete: {member} is missing; pick another backup")
        if f.stat().st_size != meta["size"]:
            raise OpsError(f"backup {where} is corrupt: {member} is {f.stat().st_size} bytes, "
                           f"manifest says {meta['size']}")
        if sha256(f) != meta["sha256"]:
            raise OpsError(f"backup {where} is corrupt: {member} does not match its sha256 in manifest.json")


def verify(path: Path, log=print) -> dict:
    """Everything restore needs, checked: manifest, sizes, checksums, redis-check-rdb/aof, SQLite integrity."""
    where = path.name
    manifest = _read_manifest(path)
    _check_files(path, manifest["files"])
    log(f"verify: {len(manifest['files'])} files match their sizes and sha256")
    run_checker(["redis-check-rdb", str(path / RDB)], f"backup {where} is corrupt: {RDB}")
    run_checker(["redis-check-aof", str(path / AOF_MANIFEST)], f"backup {where} is corrupt: {AOF_MANIFEST}")
    log("verify: redis-check-rdb and redis-check-aof OK")
    for name in manifest.get("tenants", []):
        db = path / "tenants" / name / "db.sqlite3"
        if db.exists():
            try:
                with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                    ok = conn.execute("PRAGMA integrity_check").fetchone()[0]
            except sqlite3.DatabaseError as exc:
                ok = str(exc)
            if ok != "ok":
                raise OpsError(f"backup {where} is corrupt: tenants/{name}/db.sqlite3 fails integrity_check ({ok})")
    return manifest


def complete_backups() -> list[Path]:
    return sorted(p for p in BACKUPS.iterdir()
                  if p.is_dir() and STAMP_RE.match(p.name) and (p / "manifest.json").exists())


def prune(keep: int, log=print) -> None:
    for old in complete_backups()[:-keep] if keep > 0 else []:
        shutil.rmtree(old)
        log(f"backup: removed old backup {old.name} (keeping {keep})")


def _failure(exc: BaseException, where: Path, what: str = "backup") -> str:
    """One line for what stopped a backup (or a restore's copy) half-way."""
    if isinstance(exc, OSError) and not isinstance(exc, redis.RedisError):
        place = exc.filename or where
        if exc.errno == errno.ENOSPC:
            return f"{place}: no space left on the device: free space in {where.parent} and retry"
        return f"{place}: {exc.strerror or jn._one_line(exc)}"
    if isinstance(exc, subprocess.CalledProcessError):
        return f"`{' '.join(map(str, exc.cmd[-3:]))}` failed with exit code {exc.returncode}"
    if isinstance(exc, redis.RedisError):
        return f"Redis went away during the {what} ({jn._one_line(exc)}): check `./invoke ps`, then retry"
    return jn._one_line(exc)


def _record_last(status: str, name: str, detail: str = "") -> None:
    """The outcome of the latest backup in the instance's state (a failed one leaves no folder to look at)."""
    with contextlib.suppress(OSError):  # a record of the outcome, never a reason to fail
        (jn.STATE / "last-backup.json").write_text(json.dumps({"backup": name, "status": status, "detail": detail,
                                                               "at": jn._now()}) + "\n")


def expected_size(names: list[str]) -> int:
    """What the backup will hold: Redis' files and each running tenant's database, measured now."""
    total = data_size("redis", ["/data/dump.rdb", f"/data/{AOF_DIR}"])
    for n in names:
        total += data_size(naming.service_name(n, "web"), ["/data"])
    return total


def create(keep: int = DEFAULT_KEEP, log=print) -> Path:
    log = timed(log)
    if keep < 1:
        raise OpsError(f"--keep must be at least 1 (got {keep}): the new backup itself counts")
    t0 = time.monotonic()
    old_umask = os.umask(0o077)  # private from the first byte: folders 0700, files 0600
    try:
        BACKUPS.mkdir(parents=True, exist_ok=True)
        with jn.operation("backup") as journal:
            sweep_partials(log)
            final = _create(journal, log)
            prune(keep, log)  # under the lock: never while a restore reads an old backup
    finally:
        os.umask(old_umask)
    log(f"backup: verified in {time.monotonic() - t0:.1f}s: {final}")
    return final


def _create(journal: jn.Journal, log) -> Path:
    client = redis_admin.operator(timeout=60)
    redis_admin.ping_or_explain(client)
    names = running_tenants()
    check_space(BACKUPS, expected_size(names), "backup")
    while (BACKUPS / (name := stamp())).exists() or (BACKUPS / f".{name}.partial").exists():
        time.sleep(0.2)  # one backup per second: the name is the UTC second it started
    partial = BACKUPS / f".{name}.partial"
    final = BACKUPS / name
    entry = journal.record("partial", path=str(partial))
    try:
        log(f"backup: writing {rel(final)}")
        partial.mkdir()
        # Tenant databases are independent of Redis: export them while Redis is being snapshotted.
        with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
            exports = [pool.submit(export_tenant_db, n, partial, log) for n in names]
            try:
                meta = snapshot_redis(partial, journal, log)
            finally:
                for export in exports:
                    export.exception()  # wait for each; a failed one raises below
            for export in exports:
                export.result()
        make_private(partial)
        write_manifest(partial, meta, names)
        fault_point("verify")
        verify(partial, log)
        partial.rename(final)
        journal.forget(entry)
    except (OSError, redis.RedisError, OpsError) as exc:
        shutil.rmtree(partial, ignore_errors=True)
        journal.forget(entry)
        line = _failure(exc, partial)
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
