"""`invoke backup`: a verified, self-describing copy of Redis (RDB + AOF) and every running tenant's database.

Layout of backups/<UTC timestamp>/:
  redis/dump.rdb, redis/appendonlydir/...   taken at one instant (client writes paused for the copy)
  tenants/<name>/db.sqlite3                  SQLite online backup of each running tenant
  manifest.json                              time, Redis version, keyspace, tenants, size + sha256 of every file
A backup is written under backups/.<stamp>.partial and renamed only after it verified.
"""
import datetime as dt
import hashlib
import json
import re
import shutil
import sqlite3
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from deployment import naming
from ops.config import tenants
from ops.config.envfile import rel
from ops.config.paths import BACKUPS
from ops.core.errors import OpsError, timed
from ops.data import bgsave as bg
from ops.deploy import containers, redis_admin

FORMAT = 1
AOF_DIR = "appendonlydir"
AOF_MANIFEST = f"redis/{AOF_DIR}/appendonly.aof.manifest"
RDB = "redis/dump.rdb"
PAUSE_MS = 120_000  # writes resume by themselves after this, even if this process dies mid-copy
STAMP_RE = re.compile(r"^\d{8}T\d{6}Z$")
DEFAULT_KEEP = 7


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
    deadline = time.monotonic() + timeout
    while True:
        info = client.info("persistence")
        if not info.get("aof_rewrite_in_progress") and not info.get("aof_rewrite_scheduled"):
            return
        if time.monotonic() > deadline:
            raise OpsError("an AOF rewrite is still running after 600s: retry later or check `./invoke logs --service redis`")
        time.sleep(0.1)


def snapshot_redis(dest: Path, log=print) -> dict:
    """Copy a consistent RDB + AOF directory of the running Redis into dest/redis; returns metadata."""
    client = redis_admin.operator(timeout=60)
    redis_admin.ping_or_explain(client)
    (dest / "redis").mkdir(parents=True)
    rewrite_pct = redis_admin.config_get(client, "auto-aof-rewrite-percentage")
    redis_admin.config_set(client, "auto-aof-rewrite-percentage", 0)
    log(f"backup: automatic AOF rewrites paused (auto-aof-rewrite-percentage was {rewrite_pct})")
    try:
        _wait_no_rewrite(client)
        t0 = time.monotonic()
        client.execute_command("CLIENT", "PAUSE", PAUSE_MS, "WRITE")
        try:
            space = keyspace(client)
            started = bg.start(client, log=lambda m: log(f"backup: {m}"))
            size = containers.copy_out("redis", "/data", [AOF_DIR], dest / "redis")
            log(f"backup: copied {AOF_DIR}/ ({size / 2**20:.1f} MiB)")
            bg.wait(client, started)
            size = containers.copy_out("redis", "/data", ["dump.rdb"], dest / "redis")
            log(f"backup: copied dump.rdb ({size / 2**20:.1f} MiB)")
            paused = time.monotonic() - t0
            if paused * 1000 >= PAUSE_MS:
                raise OpsError(f"copying took {paused:.0f}s, longer than the {PAUSE_MS // 1000}s write pause: "
                               "the copy may be inconsistent; retry when the disk is less busy")
        finally:
            client.execute_command("CLIENT", "UNPAUSE")
        log(f"backup: Redis writes paused for {paused:.2f}s; keyspace {space}")
    finally:
        redis_admin.config_set(client, "auto-aof-rewrite-percentage", rewrite_pct)
        log("backup: automatic AOF rewrites restored")
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
    run = subprocess.run(argv, capture_output=True, text=True)
    out = (run.stdout + run.stderr).strip()
    if run.returncode != 0 or ("OK" not in out and "is valid" not in out):
        raise OpsError(f"{what} failed {argv[0]}: {out.splitlines()[-1] if out else 'no output'}")


def verify(path: Path, log=print) -> dict:
    """Everything restore needs, checked: manifest, sizes, checksums, redis-check-rdb/aof, SQLite integrity."""
    where = path.name
    mpath = path / "manifest.json"
    if not path.is_dir():
        raise OpsError(f"backup {where} does not exist: list them with `ls {rel(BACKUPS)}`")
    try:
        manifest = json.loads(mpath.read_text())
        files = manifest["files"]
        assert manifest["format"] == FORMAT and isinstance(files, dict)
    except (OSError, ValueError, KeyError, AssertionError, TypeError):
        raise OpsError(f"backup {where} is incomplete: manifest.json is missing or unreadable; pick another backup")
    for required in (RDB, AOF_MANIFEST):
        if required not in files:
            raise OpsError(f"backup {where} is incomplete: manifest lists no {required}; pick another backup")
    for member, meta in files.items():
        f = path / member
        if not f.is_file():
            raise OpsError(f"backup {where} is incomplete: {member} is missing; pick another backup")
        if f.stat().st_size != meta["size"]:
            raise OpsError(f"backup {where} is corrupt: {member} is {f.stat().st_size} bytes, manifest says {meta['size']}")
        if sha256(f) != meta["sha256"]:
            raise OpsError(f"backup {where} is corrupt: {member} does not match its sha256 in manifest.json")
    log(f"verify: {len(files)} files match their sizes and sha256")
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
    return sorted(p for p in BACKUPS.iterdir() if p.is_dir() and STAMP_RE.match(p.name) and (p / "manifest.json").exists())


def prune(keep: int, log=print) -> None:
    for old in complete_backups()[:-keep] if keep > 0 else []:
        shutil.rmtree(old)
        log(f"backup: removed old backup {old.name} (keeping {keep})")


def create(keep: int = DEFAULT_KEEP, log=print) -> Path:
    log = timed(log)
    if keep < 1:
        raise OpsError(f"--keep must be at least 1 (got {keep}): the new backup itself counts")
    t0 = time.monotonic()
    BACKUPS.mkdir(parents=True, exist_ok=True)
    while (BACKUPS / (name := stamp())).exists() or (BACKUPS / f".{name}.partial").exists():
        time.sleep(0.2)  # one backup per second: the name is the UTC second it started
    partial = BACKUPS / f".{name}.partial"
    final = BACKUPS / name
    try:
        log(f"backup: writing {rel(final)}")
        partial.mkdir()
        names = running_tenants()
        # Tenant databases are independent of Redis: export them while Redis is being snapshotted.
        with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
            exports = [pool.submit(export_tenant_db, n, partial, log) for n in names]
            meta = snapshot_redis(partial, log)
            for export in exports:
                export.result()
        write_manifest(partial, meta, names)
        verify(partial, log)
        partial.rename(final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    prune(keep, log)
    log(f"backup: verified in {time.monotonic() - t0:.1f}s: {final}")
    return final
