"""The backup format: one owner for what a backup folder holds and how it is proven whole.

backups/<UTC timestamp>/ (the stamp: STAMP_RE):
  redis/dump.rdb, redis/appendonlydir/...   taken at one instant (client writes paused for the copy)
  tenants/<name>/db.sqlite3 (or db.pgdump)   each running tenant's database
  manifest.json                              format, time, Redis version, keyspace, tenants, size + sha256 of every file
A folder being written is hidden as .<stamp>.partial (a restore's copy of the current data as
.pre-restore-<stamp>.partial: PARTIAL_RE) and renamed only once verify() passed. Everything is private:
root's, folders 0700, files 0600 (make_private), because a backup holds every tenant's data.

Backup (ops/data/backup.py) writes this format and restore (ops/data/restore.py) reads it; both import
this module and neither imports the other.
"""
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import sqlite3
from pathlib import Path

from ops.config.envfile import rel
from ops.config.paths import BACKUPS
from ops.core.errors import OpsError
from ops.core.run import probe

FORMAT = 1
AOF_DIR = "appendonlydir"
AOF_MANIFEST = f"redis/{AOF_DIR}/appendonly.aof.manifest"
RDB = "redis/dump.rdb"
STAMP_RE = re.compile(r"^\d{8}T\d{6}Z$")
PARTIAL_RE = re.compile(r"^\.(pre-restore-)?\d{8}T\d{6}Z\.partial$")


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


def read_manifest(path: Path) -> dict:
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


def check_files(path: Path, files: dict) -> None:
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
    manifest = read_manifest(path)
    check_files(path, manifest["files"])
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
