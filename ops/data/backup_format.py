"""The backup format: one owner for what a backup folder holds and how it is proven whole.

backups/<UTC timestamp>/ (the stamp: STAMP_RE):
  redis/dump.rdb, redis/appendonlydir/...   taken at one instant (client writes paused for the copy)
  tenants/<name>/db.sqlite3                  each running SQLite tenant's database (SQLite's online backup)
  tenants/<name>/db.pgdump                   each running PostgreSQL tenant's (pg_dump --format=custom, taken
                                             right after Redis' snapshot began: ops/data/postgres_data.py)
  manifest.json                              format, time, the server that wrote it (server_of), keyspace,
                                             tenants, size + sha256 of every file; from format 2 also
                                             redis_snapshot_at (when BGSAVE began) and `postgres`: per tenant
                                             its dump, when the dump was made, the server's version and the
                                             exact rows of every table (postgres_of)
Format 1 (the previous releases: Redis and SQLite only) is still read: it simply has no `postgres` section.

From format 3 one manifest carries both kinds of backup (`scope`), with a section per tenant (`tenant_sections`:
per tenant its Redis key count, how many of those keys have a TTL, its database kind and its files):
  scope "whole"   the layout above; each configured tenant's key count is taken from the RDB itself, loaded in
                  a throwaway server (ops/data/tenant_keys.py), so `restore WHOLE --tenant b` checks against it
  scope "tenant"  backups/tenant-<t>/<stamp>/ (archives: backups/archives/<t>-<stamp>/): one tenant only, no RDB
                  or AOF: redis/keys.bin (KEYS_FILE, format below: every key under the tenant's prefix as DUMP
                  payload and absolute expiry) and tenants/<t>/db.sqlite3 or db.pgdump
Formats 1 and 2 have no tenant sections: they are whole backups (tenant_sections_of() says so).

redis/keys.bin: the line `tenantstack-keys 1\n`, then per key: key length (4 bytes, big-endian), the key, its
absolute expiry in Unix ms (8 bytes, signed; -1 when it has none), DUMP payload length (4 bytes), the payload (the
server's own DUMP serialization, with its RDB version and CRC64); then `END` and the record count (8 bytes). The
trailer proves the file was written to its end.

A folder being written is hidden as .<name>.partial (a restore's copy of the current data as
.pre-restore-<stamp>.partial: PARTIAL_RE) and renamed only once verify() passed. Everything is private:
root's, folders 0700, files 0600 (make_private), because a backup holds every tenant's data.

Backup (ops/data/backup.py) writes this format and restore (ops/data/restore.py) reads it; both import
this module and neither imports the other.

The Redis files are checked by the server image's own valkey-check-rdb and valkey-check-aof (check_redis_files),
run in a throwaway container of the instance's server image, never by a host binary: a backup is judged by the
build that wrote it and will read it back.
"""
import datetime as dt
import hashlib
import json
import os
import re
import shlex
import shutil
import sqlite3
import struct
from pathlib import Path

from ops.config.envfile import rel
from ops.config.paths import BACKUPS, INSTANCE
from ops.core.errors import OpsError
from ops.core.run import probe
from ops.data import postgres_data

FORMAT = 3  # 2: redis_snapshot_at and the `postgres` section; 3: `scope` and `tenant_sections`
READABLE_FORMATS = (1, 2, 3)
WHOLE, TENANT = "whole", "tenant"  # a manifest's scope
REDIS_DIR = "redis"
AOF_DIR = "appendonlydir"
AOF_MANIFEST_NAME = "appendonly.aof.manifest"
AOF_MANIFEST = f"{REDIS_DIR}/{AOF_DIR}/{AOF_MANIFEST_NAME}"
RDB_NAME = "dump.rdb"
RDB = f"{REDIS_DIR}/{RDB_NAME}"
STAMP_RE = re.compile(r"^\d{8}T\d{6}Z$")
# .<stamp>.partial, .pre-restore-<stamp>.partial, and an archive's .<tenant>-<stamp>.partial
PARTIAL_RE = re.compile(r"^\.(pre-restore-|[a-z][a-z0-9]{0,14}-)?\d{8}T\d{6}Z\.partial$")
KEYS_FILE = f"{REDIS_DIR}/keys.bin"
KEYS_MAGIC = b"tenantstack-keys 1\n"
KEYS_END = b"END"
TENANT_DIR_PREFIX = "tenant-"  # backups/tenant-<t>/: one tenant's backups
ARCHIVES = "archives"  # backups/archives/: removed tenants' last backups


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


def backup_parents() -> list[Path]:
    """Every folder that holds backups: backups/ itself, each backups/tenant-<t>/ and backups/archives/."""
    if not BACKUPS.is_dir():
        return []
    return [BACKUPS, *sorted(p for p in BACKUPS.iterdir() if p.is_dir() and not p.is_symlink() and (
        p.name == ARCHIVES or p.name.startswith(TENANT_DIR_PREFIX)))]


def sweep_partials(log=None) -> list[str]:
    """Remove .partial folders no operation owns any more (call with the instance's lock held)."""
    lines = []
    for parent in backup_parents():
        for p in sorted(parent.iterdir()):
            if PARTIAL_RE.match(p.name) and p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
                lines.append(f"removed the unfinished folder {rel(p)} that an interrupted run left")
    for line in lines:
        if log:
            log(f"backup: {line}")
    return lines


def write_manifest(dest: Path, meta: dict, tenant_names: list[str], scope: str = WHOLE,
                   sections: dict | None = None) -> dict:
    """manifest.json of the folder: meta, the scope, the tenants and their sections, every file's size and sha256.

    sections: tenant -> {"keys", "expires"} (counts of its Redis keys); each section gets its database kind and
    files here, from what the folder holds."""
    files = {}
    for path in sorted(p for p in dest.rglob("*") if p.is_file() and p.name != "manifest.json"):
        files[str(path.relative_to(dest))] = {"size": path.stat().st_size, "sha256": sha256(path)}
    tenant_sections = {}
    for name, counts in sorted((sections or {}).items()):
        own = sorted(f for f in files if f.startswith(f"tenants/{name}/"))
        kind = ("postgres" if postgres_dump_path(name) in own else
                "sqlite" if f"tenants/{name}/db.sqlite3" in own else None)
        if scope == TENANT:
            own = [KEYS_FILE, *own]
        tenant_sections[name] = {"keys": counts["keys"], "expires": counts["expires"], "database": kind,
                                 "files": own}
    manifest = {"format": FORMAT, "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "scope": scope, **meta, "tenants": tenant_names, "tenant_sections": tenant_sections, "files": files}
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def scope_of(manifest: dict) -> str:
    """WHOLE or TENANT; formats 1 and 2 knew only whole backups."""
    return manifest.get("scope", WHOLE)


def tenant_sections_of(manifest: dict) -> dict | None:
    """tenant -> {keys, expires, database, files}; None for a format-1 or -2 manifest (no per-tenant counts)."""
    return manifest.get("tenant_sections") if manifest["format"] >= 3 else None  # noqa: PLR2004 - format 3


# ---- redis/keys.bin: one tenant's keys (format in the module docstring) ---------------------------------------
_HEAD = struct.Struct(">I")
_EXPIRY = struct.Struct(">q")
_COUNT = struct.Struct(">Q")


def write_keys(path: Path, records) -> dict:
    """Write (key, absolute expiry ms or -1, DUMP payload) records; returns {"keys", "expires", "bytes"}."""
    keys = expires = size = 0
    with open(path, "wb") as fh:
        fh.write(KEYS_MAGIC)
        for key, expiry, payload in records:
            fh.write(_HEAD.pack(len(key)) + key + _EXPIRY.pack(expiry) + _HEAD.pack(len(payload)))
            fh.write(payload)
            keys += 1
            expires += expiry >= 0
            size += len(key) + len(payload)
        fh.write(KEYS_END + _COUNT.pack(keys))
        fh.flush()
        os.fsync(fh.fileno())
    return {"keys": keys, "expires": expires, "bytes": size}


def read_keys(path: Path, where: str = "?"):
    """Yield (key, absolute expiry ms or -1, DUMP payload) from a keys file; one line when it is not whole."""
    def broken(what):
        return OpsError(f"backup {where} is corrupt: {KEYS_FILE} {what}; pick another backup")
    with open(path, "rb") as fh:
        if fh.read(len(KEYS_MAGIC)) != KEYS_MAGIC:
            raise broken("does not start with its format line")
        n = 0
        while True:
            head = fh.read(_HEAD.size)
            if head[:len(KEYS_END)] == KEYS_END and len(head) == _HEAD.size:
                rest = head[len(KEYS_END):] + fh.read(_COUNT.size - (_HEAD.size - len(KEYS_END)))
                if len(rest) != _COUNT.size or _COUNT.unpack(rest)[0] != n or fh.read(1):
                    raise broken("ends in a trailer that does not match its records")
                return
            if len(head) != _HEAD.size:
                raise broken(f"ends after {n} records, without its trailer")
            key = fh.read(_HEAD.unpack(head)[0])
            rest = fh.read(_EXPIRY.size + _HEAD.size)
            if len(rest) != _EXPIRY.size + _HEAD.size:
                raise broken(f"is cut in record {n + 1}")
            expiry = _EXPIRY.unpack(rest[:_EXPIRY.size])[0]
            payload = fh.read(_HEAD.unpack(rest[_EXPIRY.size:])[0])
            if len(payload) != _HEAD.unpack(rest[_EXPIRY.size:])[0]:
                raise broken(f"is cut in record {n + 1}")
            n += 1
            yield key, expiry, payload


def keys_summary(path: Path, where: str = "?") -> dict:
    """{"keys", "expires", "bytes"} of a keys file, read whole (so a cut or garbled file is refused)."""
    keys = expires = size = 0
    for key, expiry, payload in read_keys(path, where):
        keys += 1
        expires += expiry >= 0
        size += len(key) + len(payload)
    return {"keys": keys, "expires": expires, "bytes": size}


def server_info(info: dict) -> dict:
    """The running server as a manifest names it, from INFO server.

    Valkey names itself (server_name, valkey_version) and reports redis_version 7.2.4 only as the Redis version
    it is compatible with; Redis reports redis_version alone. `redis_version` is kept beside the server's own
    version so older tooling that reads it still finds one."""
    name = str(info.get("server_name") or "redis")
    own = info.get(f"{name}_version")
    return {"name": name, "version": str(own if own is not None else info["redis_version"]),
            "redis_version": str(info["redis_version"])}


def server_of(manifest: dict) -> dict | None:
    """The server that wrote a backup: this format's `server` section, or, in a manifest of the previous release
    (top-level redis_version only, written when the server was Redis 7.0), Redis of that version. None when
    the manifest names neither."""
    server = manifest.get("server")
    if server is not None:
        if not (isinstance(server, dict) and isinstance(server.get("name"), str)
                and isinstance(server.get("version"), str) and server["name"] and server["version"]):
            return None
        return {"name": server["name"], "version": server["version"],
                "redis_version": str(server.get("redis_version") or manifest.get("redis_version") or "")}
    legacy = manifest.get("redis_version")
    if isinstance(legacy, str) and legacy:
        return {"name": "redis", "version": legacy, "redis_version": legacy}
    return None


def server_meta(info: dict) -> dict:
    """What a backup's manifest records about the server that wrote it (both spellings: see server_info)."""
    server = server_info(info)
    return {"server": server, "redis_version": server["redis_version"]}


# The server image's own checkers (Debian's valkey-tools in redis/Dockerfile).
CHECK_RDB, CHECK_AOF = "valkey-check-rdb", "valkey-check-aof"
_SUCCESS = {CHECK_RDB: "RDB looks OK", CHECK_AOF: "All AOF files and manifest are valid"}
_STATUS = "tenantstack-checker-status"  # printed by the container's shell after each checker: `<mark> <checker> $?`
_STATUS_RE = re.compile(rf"^{_STATUS} (\S+) (\d+)$")
NOT_FOUND = 127  # the shell's exit status for a command it cannot find


def server_image() -> str:
    return INSTANCE.image("redis")


def _scratch_kib(folder: Path, aof_dir: str | None) -> int:
    """Room for the AOF directory's copy (tmpfs rounds each file up to a 4 KiB page), plus 1 MiB."""
    total = 0
    if aof_dir is not None and (folder / aof_dir).is_dir():
        total = sum(-(-p.stat().st_size // 4096) * 4 for p in (folder / aof_dir).rglob("*") if p.is_file())
    return total + 1024


def _reason(lines: list[str]) -> str:
    """The checker's own diagnosis among its lines: the line after RDB ERROR DETECTED, else its last say."""
    for i, line in enumerate(lines[:-1]):
        if "RDB ERROR DETECTED" in line:
            return lines[i + 1]
    said = [line for line in lines
            if not line.startswith(("[info]", "[additional info]")) and "Checking RDB file" not in line
            and "Terminating server" not in line]
    if not said:
        return "it could not read the file (it reads as root without capabilities: root must own the file)"
    # valkey-check-aof suggests --fix, which truncates the file in place: never the fix for a backup.
    return said[-1].split(" Use the --fix option", 1)[0].rstrip(".")


def _checks(rdb: str | None, aof_manifest: str | None) -> list[tuple[str, str, str]]:
    """(checker, file relative to the mounted folder, its shell command in the container) for each check."""
    checks = []
    if rdb is not None:
        checks.append((CHECK_RDB, rdb, f"{CHECK_RDB} {shlex.quote('/backup/' + rdb)}"))
    if aof_manifest is not None:
        aof_dir = str(Path(aof_manifest).parent)
        copy = (f"mkdir -p {shlex.quote('/data/' + aof_dir)} && cp -R {shlex.quote('/backup/' + aof_dir + '/.')} "
                f"{shlex.quote('/data/' + aof_dir + '/')}")
        checks.append((CHECK_AOF, aof_manifest, f"{copy} && {CHECK_AOF} {shlex.quote('/data/' + aof_manifest)}"))
    return checks


def checker_argv(folder: Path, rdb: str | None = None, aof_manifest: str | None = None) -> list[str]:
    """The one `docker run` of check_redis_files (see there for why each option)."""
    checks = _checks(rdb, aof_manifest)
    # One stream (stderr into stdout) keeps each checker's lines before its own status line.
    script = "\n".join(["exec 2>&1", *(f'{cmd}; echo "{_STATUS} {checker} $?"' for checker, _, cmd in checks)])
    scratch = _scratch_kib(folder, str(Path(aof_manifest).parent) if aof_manifest is not None else None)
    # /data is the image's VOLUME: a tmpfs there is the scratch space, and no anonymous volume is made.
    return ["docker", "run", "--rm", "--pull", "never", "--network", "none", "--read-only", "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges:true", "--user", "0:0",
            "--tmpfs", f"/data:rw,size={scratch}k,mode=0700", "-v", f"{folder.resolve()}:/backup:ro",
            "--entrypoint", "sh", server_image(), "-c", script]


def _sections(stdout: str) -> dict[str, tuple[int, list[str]]]:
    """checker -> (its exit status, the non-empty lines it printed), from the container's one output stream."""
    sections, lines = {}, []
    for raw in stdout.splitlines():
        line = raw.strip()
        if match := _STATUS_RE.match(line):
            sections[match.group(1)] = (int(match.group(2)), lines)
            lines = []
        elif line:
            lines.append(line)
    return sections


def check_redis_files(folder: Path, subject: str, rdb: str | None = None, aof_manifest: str | None = None) -> None:
    """Run valkey-check-rdb on folder/rdb and valkey-check-aof on the multi-part AOF whose manifest is
    folder/aof_manifest (paths relative to folder), in one throwaway container of the instance's server image.

    The container has no network, a read-only root, no capabilities and no-new-privileges; folder is mounted
    read-only. It runs as root (uid 0), not as the server's UID: backups are root's, files 0600 in 0700
    folders (make_private, and restore's check_private refuses anything looser), so only their owner can
    read them; root without capabilities has exactly the owner's rights and cannot bypass any permission.
    valkey-check-aof opens every AOF file read-write (it can truncate with --fix), so it checks a copy of
    the AOF directory on a tmpfs sized for it, never the backup. Podman's Docker API reports exit code 0 for
    `docker run --rm` whatever the container did, so the shell prints each checker's exit status on a line
    of its own and that is what counts; the checker's own success line is required too.
    Raises one OpsError line: `<subject> is corrupt: <file> failed <checker>: <its diagnosis> (exit N)`, or
    why it could not check (the image is missing or predates Valkey: `./invoke build`).
    """
    image = server_image()
    checks = _checks(rdb, aof_manifest)
    names = " and ".join(checker for checker, _, _ in checks)
    proc = probe(checker_argv(folder, rdb, aof_manifest), what=f"{names} in {image}", timeout=1800)
    sections = _sections(proc.stdout)
    for checker, member, _ in checks:
        if checker not in sections:
            if probe(["docker", "image", "inspect", "--format", "{{.Id}}", image]).returncode != 0:
                raise OpsError(f"cannot check {subject}: the server image {image} is missing ({names} run from it, "
                               "never from the host): build it with `./invoke build`")
            said = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1]
            raise OpsError(f"cannot check {subject}: {checker} did not run in {image} (exit {proc.returncode}): "
                           f"{said[:300]}")
        status, said = sections[checker]
        if status == NOT_FOUND:
            raise OpsError(f"cannot check {subject}: the server image {image} has no {checker} (built before the "
                           "move to Valkey?): rebuild it with `./invoke build`")
        if status != 0 or not any(_SUCCESS[checker] in line for line in said):
            raise OpsError(f"{subject} is corrupt: {folder.name}/{member} failed {checker}: {_reason(said)[:300]} "
                           f"(exit {status})")


def _check_sections(manifest: dict, files: dict, where: str) -> None:
    """The scope, the tenant sections and the Redis files the scope requires, each as backup writes them."""
    scope = scope_of(manifest)
    sections = tenant_sections_of(manifest)
    if scope not in (WHOLE, TENANT) or (manifest["format"] >= 3 and not isinstance(sections, dict)):  # noqa: PLR2004
        raise OpsError(f"backup {where} is incomplete: manifest.json has no valid scope or tenant sections; "
                       "pick another backup")
    for name, section in (sections or {}).items():
        if not (isinstance(section, dict) and isinstance(section.get("keys"), int)
                and isinstance(section.get("expires"), int) and isinstance(section.get("files"), list)
                and all(f in files for f in section["files"])):
            raise OpsError(f"backup {where} is incomplete: manifest.json's section of tenant {name} lacks its key "
                           "counts or names files it does not list; pick another backup")
    if scope == TENANT and len(sections) != 1:
        raise OpsError(f"backup {where} is incomplete: a one-tenant backup's manifest.json must hold exactly one "
                       "tenant section; pick another backup")
    for member in (RDB, AOF_MANIFEST) if scope == WHOLE else (KEYS_FILE,):
        if member not in files:
            raise OpsError(f"backup {where} is incomplete: manifest lists no {member}; pick another backup")


def read_manifest(path: Path) -> dict:
    """The backup's manifest, checked for its form (one line naming what is wrong)."""
    where = path.name
    mpath = path / "manifest.json"
    if not path.is_dir():
        raise OpsError(f"backup {where} does not exist: list them with `ls {rel(BACKUPS)}`")
    manifest = None
    try:
        manifest = json.loads(mpath.read_text())
        files = manifest["files"]
        well_formed = manifest["format"] in READABLE_FORMATS and isinstance(files, dict)
    except (OSError, ValueError, KeyError, TypeError):
        well_formed = False
    newer = isinstance(manifest, dict) and isinstance(manifest.get("format"), int) and manifest["format"] > FORMAT
    if newer:
        raise OpsError(f"backup {where} is in format {manifest['format']}, newer than this release reads "
                       f"({FORMAT}): restore it with the release that wrote it")
    if not well_formed:  # a real check, not an assert: asserts vanish under python -O
        raise OpsError(f"backup {where} is incomplete: manifest.json is missing or unreadable; pick another backup")
    if server_of(manifest) is None:
        raise OpsError(f"backup {where} is incomplete: manifest.json names no server that wrote it (neither a "
                       "`server` section nor `redis_version`); pick another backup")
    _check_sections(manifest, files, where)
    postgres_of(manifest, where)
    return manifest


def postgres_dump_path(tenant: str) -> str:
    """Where a PostgreSQL tenant's dump is in a backup folder."""
    return f"tenants/{tenant}/{postgres_data.DUMP_NAME}"


def postgres_of(manifest: dict, where: str = "?") -> dict:
    """tenant -> {file, dumped_at, server_version, tables {schema.table: rows}} of each PostgreSQL tenant's dump
    ({} in a format-1 manifest); one line naming what is wrong when the section is not what backup writes."""
    section = manifest.get("postgres", {})
    problem = None if isinstance(section, dict) else "its postgres section is not an object"
    for tenant, entry in section.items() if problem is None else ():
        tables = entry.get("tables") if isinstance(entry, dict) else None
        if not isinstance(entry, dict) or entry.get("file") != postgres_dump_path(tenant):
            problem = f"postgres.{tenant} does not name {postgres_dump_path(tenant)}"
        elif entry["file"] not in manifest["files"]:
            problem = f"postgres.{tenant}'s dump {entry['file']} is not among its files"
        elif not isinstance(entry.get("dumped_at"), str) or not isinstance(tables, dict) or not all(
                isinstance(t, str) and isinstance(n, int) and not isinstance(n, bool) and n >= 0
                for t, n in tables.items()):
            problem = f"postgres.{tenant} lacks when the dump was made or the rows of each table"
        if problem:
            break
    dumps = sorted(f for f in manifest["files"] if f.endswith(f"/{postgres_data.DUMP_NAME}"))
    if problem is None and dumps != sorted(postgres_dump_path(t) for t in section):
        problem = f"its files hold PostgreSQL dumps ({', '.join(dumps)}) that its postgres section does not describe"
    if problem:
        raise OpsError(f"backup {where} is incomplete: manifest.json: {problem}; pick another backup")
    return section


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
    """Everything restore needs, checked: manifest, sizes, checksums, valkey-check-rdb/aof, SQLite integrity, and each
    PostgreSQL dump read whole by the PostgreSQL image's pg_restore (its rows as the manifest recorded them)."""
    where = path.name
    manifest = read_manifest(path)
    check_files(path, manifest["files"])
    log(f"verify: {len(manifest['files'])} files match their sizes and sha256")
    server = server_of(manifest)
    if scope_of(manifest) == WHOLE:
        check_redis_files(path / REDIS_DIR, f"backup {where}", rdb=RDB_NAME,
                          aof_manifest=f"{AOF_DIR}/{AOF_MANIFEST_NAME}")
        log(f"verify: {CHECK_RDB} and {CHECK_AOF} of {server_image()} OK "
            f"(written by {server['name']} {server['version']})")
    else:
        (name, section), = tenant_sections_of(manifest).items()
        found = keys_summary(path / KEYS_FILE, where)
        if (found["keys"], found["expires"]) != (section["keys"], section["expires"]):
            raise OpsError(f"backup {where} is corrupt: {KEYS_FILE} holds {found['keys']} keys ({found['expires']} "
                           f"with a TTL), manifest.json says {section['keys']} ({section['expires']})")
        log(f"verify: {KEYS_FILE}: tenant {name}'s {found['keys']} keys read whole, as recorded "
            f"(written by {server['name']} {server['version']})")
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
    for entry in postgres_of(manifest, where).values():
        found = postgres_data.check_dump(path / entry["file"], f"backup {where}", entry["file"])
        problem = postgres_data.counts_problem(entry["tables"], found["tables"])
        if problem:
            raise OpsError(f"backup {where} is corrupt: {entry['file']} does not hold what manifest.json recorded: "
                           f"{problem}")
        log(f"verify: {entry['file']}: pg_restore --list and a read of all its data OK "
            f"({len(found['tables'])} tables, {sum(found['tables'].values())} rows, as recorded)")
    return manifest


def complete_backups() -> list[Path]:
    return sorted(p for p in BACKUPS.iterdir()
                  if p.is_dir() and STAMP_RE.match(p.name) and (p / "manifest.json").exists())
