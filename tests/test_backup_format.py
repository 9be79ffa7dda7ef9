"""The backup format reads manifests of this release and of the previous one, and judges checkers by what they say.

Fast: no engine. The checkers themselves run in the server image in tests/containers/test_backup_restore.py.
"""
import datetime as dt
import json
import subprocess

import pytest

from ops.config.paths import INSTANCE
from ops.core.errors import OpsError
from ops.data import backup_format as fmt

# What the previous release (Redis 7.0) wrote: no `server` section, the version at the top level.
LEGACY = {"format": 1, "created": "2026-11-21T17:12:41+00:00", "redis_version": "7.0.15",
          "keyspace": {"db0": {"keys": 9, "expires": 1}}, "tenants": ["a"], "files": {}}
# INFO server as redis-py parses it (only the fields that matter here).
VALKEY_INFO = {"redis_version": "7.2.4", "server_name": "valkey", "valkey_version": "8.1.1", "redis_mode": "standalone"}
REDIS_INFO = {"redis_version": "7.0.15", "redis_mode": "standalone"}


def test_a_valkey_server_is_recorded_by_its_own_name_and_version_with_redis_version_kept():
    meta = fmt.server_meta(VALKEY_INFO)
    assert meta == {"server": {"name": "valkey", "version": "8.1.1", "redis_version": "7.2.4"},
                    "redis_version": "7.2.4"}


def test_a_redis_server_is_recorded_as_redis_with_its_redis_version():
    assert fmt.server_info(REDIS_INFO) == {"name": "redis", "version": "7.0.15", "redis_version": "7.0.15"}


def test_a_manifest_of_the_previous_release_names_redis_and_its_version():
    assert fmt.server_of(LEGACY) == {"name": "redis", "version": "7.0.15", "redis_version": "7.0.15"}


def test_a_manifest_of_this_release_names_the_server_itself():
    manifest = {**LEGACY, **fmt.server_meta(VALKEY_INFO)}
    assert fmt.server_of(manifest) == {"name": "valkey", "version": "8.1.1", "redis_version": "7.2.4"}


@pytest.mark.parametrize("server", [None, "valkey", {"name": "valkey"}, {"name": "", "version": "8.1.1"},
                                    {"name": "valkey", "version": 8.1}])
def test_a_manifest_naming_no_readable_server_names_none(server):
    manifest = {k: v for k, v in LEGACY.items() if k != "redis_version"}
    if server is not None:
        manifest["server"] = server
    assert fmt.server_of(manifest) is None


def _folder(tmp_path, meta: dict):
    path = tmp_path / "20261121T171241Z"
    (path / "redis" / fmt.AOF_DIR).mkdir(parents=True)
    (path / fmt.RDB).write_bytes(b"REDIS0010")
    (path / fmt.AOF_MANIFEST).write_text("file appendonly.aof.1.base.rdb seq 1 type b\n")
    fmt.write_manifest(path, meta, ["a"])
    return path


def test_read_manifest_accepts_an_old_manifest_and_a_new_one(tmp_path):
    old = _folder(tmp_path / "old", {"redis_version": "7.0.15", "keyspace": {}})
    new = _folder(tmp_path / "new", {**fmt.server_meta(VALKEY_INFO), "keyspace": {}})
    assert fmt.server_of(fmt.read_manifest(old))["version"] == "7.0.15"
    written = fmt.read_manifest(new)
    assert written["server"]["name"] == "valkey" and written["redis_version"] == "7.2.4"


def test_read_manifest_refuses_one_naming_no_server_in_one_line(tmp_path):
    path = _folder(tmp_path, {"keyspace": {}})
    with pytest.raises(OpsError) as exc:
        fmt.read_manifest(path)
    assert "\n" not in str(exc.value) and str(exc.value).startswith(f"backup {path.name} is incomplete: ")


# valkey-check-aof 8.1 on a multi-part AOF whose INCR file lost its last 7 bytes: it says OK and "is valid" for
# the BASE part before refusing the INCR one. Through Podman's Docker API `docker run --rm` exits 0 regardless.
TRUNCATED_AOF = """Start checking Multi Part AOF
Start to check BASE AOF (RDB format).
[offset 0] Checking RDB file /data/appendonlydir/appendonly.aof.2.base.rdb
[offset 2079] Checksum OK
[offset 2079] \\o/ RDB looks OK! \\o/
RDB preamble is OK, proceeding with AOF tail...
BASE AOF appendonly.aof.2.base.rdb is valid
Start to check INCR files.
0x             60a: Expected \\r\\n, got: 0000
AOF analyzed: filename=appendonly.aof.2.incr.aof, size=1548, ok_up_to=1524, ok_up_to_line=354, diff=24
AOF appendonly.aof.2.incr.aof is not valid. Use the --fix option to try fixing it.
"""
GOOD_RDB = """[offset 0] Checking RDB file /backup/dump.rdb
[offset 2511] \\o/ RDB looks OK! \\o/
[info] 250 keys read
"""
CORRUPT_RDB = """[offset 0] Checking RDB file /backup/dump.rdb
--- RDB ERROR DETECTED ---
[offset 601] Internal error in RDB reading offset 0, function at rdb.c:566 -> Unknown RDB string encoding type 60
[additional info] While doing: read-object-value
[info] 54 keys read
6:M 07 Dec 2026 10:42:16.837 # Terminating server after rdb file reading failure.
"""


def _engine_says(monkeypatch, stdout: str) -> None:
    """The container ran and printed stdout; the CLI's exit code is 0, as Podman's Docker API reports it."""
    monkeypatch.setattr(fmt, "probe", lambda argv, **kw: subprocess.CompletedProcess(argv, 0, stdout, ""))


def _status(checker: str, code: int) -> str:
    return f"{fmt._STATUS} {checker} {code}\n"


def test_a_refusing_aof_checker_is_a_refusal_whatever_the_engine_exit_code_and_its_ok_lines(monkeypatch, tmp_path):
    _engine_says(monkeypatch, GOOD_RDB + _status(fmt.CHECK_RDB, 0) + TRUNCATED_AOF + _status(fmt.CHECK_AOF, 1))
    with pytest.raises(OpsError) as exc:
        fmt.check_redis_files(tmp_path / "redis", "backup B", rdb="dump.rdb", aof_manifest=fmt.AOF_MANIFEST_NAME)
    assert str(exc.value) == ("backup B is corrupt: redis/appendonly.aof.manifest failed valkey-check-aof: "
                              "AOF appendonly.aof.2.incr.aof is not valid (exit 1)")


def test_a_refusing_rdb_checker_is_named_with_its_own_diagnosis(monkeypatch, tmp_path):
    _engine_says(monkeypatch, CORRUPT_RDB + _status(fmt.CHECK_RDB, 1))
    with pytest.raises(OpsError) as exc:
        fmt.check_redis_files(tmp_path / "redis", "backup B", rdb="dump.rdb")
    assert str(exc.value) == ("backup B is corrupt: redis/dump.rdb failed valkey-check-rdb: [offset 601] Internal "
                              "error in RDB reading offset 0, function at rdb.c:566 -> Unknown RDB string encoding "
                              "type 60 (exit 1)")


def test_a_checker_that_exits_0_without_its_success_line_is_not_believed(monkeypatch, tmp_path):
    # valkey-check-aof given an empty manifest takes it for an empty old-style AOF: "is empty", exit 0.
    _engine_says(monkeypatch, "Start checking Old-Style AOF\nAOF /data/x is empty\n" + _status(fmt.CHECK_AOF, 0))
    with pytest.raises(OpsError, match=r"failed valkey-check-aof: AOF /data/x is empty \(exit 0\)$"):
        fmt.check_redis_files(tmp_path / "redis", "backup B", aof_manifest=fmt.AOF_MANIFEST_NAME)


def test_checkers_that_said_ok_and_exited_0_pass(monkeypatch, tmp_path):
    _engine_says(monkeypatch, GOOD_RDB + _status(fmt.CHECK_RDB, 0) + "All AOF files and manifest are valid\n"
                 + _status(fmt.CHECK_AOF, 0))
    fmt.check_redis_files(tmp_path / "redis", "backup B", rdb="dump.rdb", aof_manifest=fmt.AOF_MANIFEST_NAME)


def test_the_checker_container_is_hardened_and_reads_the_backup_read_only(tmp_path):
    argv = fmt.checker_argv(tmp_path / "redis", rdb="dump.rdb", aof_manifest=f"{fmt.AOF_DIR}/x.manifest")
    pairs = set(zip(argv, argv[1:], strict=False))
    assert argv[:3] == ["docker", "run", "--rm"] and "--read-only" in argv
    assert {("--network", "none"), ("--cap-drop", "ALL"), ("--security-opt", "no-new-privileges:true"),
            ("--pull", "never"), ("--entrypoint", "sh"), ("-v", f"{tmp_path / 'redis'}:/backup:ro")} <= pairs
    image = argv.index(INSTANCE.image("redis"))  # the instance's server image, the one `./invoke build` makes
    script = argv[image + 2]
    # The AOF is checked on a copy in the tmpfs: valkey-check-aof opens its files read-write.
    assert "valkey-check-rdb /backup/dump.rdb" in script and "valkey-check-aof /data/appendonlydir/x.manifest" in script


def test_the_old_manifest_still_dates_the_last_verified_backup(monkeypatch, tmp_path):
    from ops.monitor import status, textfile

    old = _folder(tmp_path, {"redis_version": "7.0.15", "keyspace": {}})
    monkeypatch.setattr(fmt, "BACKUPS", tmp_path)
    monkeypatch.setattr(textfile, "BACKUPS", tmp_path)
    name, created, server = textfile.last_verified_backup()
    assert name == old.name and created == dt.datetime.fromisoformat(json.loads(
        (old / "manifest.json").read_text())["created"]) and server["name"] == "redis"
    doc = {"instance": "x", "time": "t", "alerts": [], "redis": {"up": False}, "tenants": {}, "certificates": {},
           "backup": {"name": name, "age_seconds": 60, "server": server}}
    assert "last verified backup: 20261121T171241Z, 1m0s ago, written by redis 7.0.15" in status.render(doc, False)


# ---- format 2: PostgreSQL tenants' dumps ------------------------------------------------------------------------
PG_ENTRY = {"file": "tenants/pgb/db.pgdump", "dumped_at": "2026-12-07T16:57:32+00:00",
            "server_version": "17.12 (Debian 17.12-0+deb13u1)", "tables": {"public.notes": 50, 'public."user"': 0}}


def _pg_folder(tmp_path, entry=PG_ENTRY, dump: str | None = "tenants/pgb/db.pgdump"):
    path = tmp_path / "20261207T165732Z"
    (path / "redis" / fmt.AOF_DIR).mkdir(parents=True)
    (path / fmt.RDB).write_bytes(b"REDIS0011")
    (path / fmt.AOF_MANIFEST).write_text("file appendonly.aof.1.base.rdb seq 1 type b\n")
    if dump:
        (path / dump).parent.mkdir(parents=True)
        (path / dump).write_bytes(b"PGDMP")
    meta = {**fmt.server_meta(VALKEY_INFO), "keyspace": {}, "redis_snapshot_at": "2026-12-07T16:57:31.950+00:00",
            "postgres": {} if entry is None else {"pgb": entry}}
    fmt.write_manifest(path, meta, ["a", "pgb"])
    return path


def test_a_new_manifest_is_format_3_with_the_snapshot_time_and_each_dump(tmp_path):
    manifest = fmt.read_manifest(_pg_folder(tmp_path))
    assert manifest["format"] == fmt.FORMAT == 3 and manifest["redis_snapshot_at"].startswith("2026-12-07T16:57:31")
    assert fmt.scope_of(manifest) == fmt.WHOLE
    assert fmt.postgres_of(manifest) == {"pgb": PG_ENTRY}
    assert manifest["files"]["tenants/pgb/db.pgdump"]["size"] == len(b"PGDMP")


def test_a_format_1_manifest_is_still_read_and_has_no_postgres_tenant(tmp_path):
    path = _folder(tmp_path, {"redis_version": "7.0.15", "keyspace": {}})
    manifest = json.loads((path / "manifest.json").read_text())
    (path / "manifest.json").write_text(json.dumps({**manifest, "format": 1}))
    assert fmt.postgres_of(fmt.read_manifest(path)) == {}


@pytest.mark.parametrize(("entry", "dump", "said"), [
    ({**PG_ENTRY, "file": "tenants/pgc/db.pgdump"}, "tenants/pgb/db.pgdump", "does not name tenants/pgb/db.pgdump"),
    (PG_ENTRY, None, "dump tenants/pgb/db.pgdump is not among its files"),
    ({**PG_ENTRY, "tables": {"public.notes": -1}}, "tenants/pgb/db.pgdump", "the rows of each table"),
    ({k: v for k, v in PG_ENTRY.items() if k != "dumped_at"}, "tenants/pgb/db.pgdump", "when the dump was made"),
    (None, "tenants/pgb/db.pgdump", "PostgreSQL dumps (tenants/pgb/db.pgdump) that its postgres section does not"),
])
def test_a_postgres_section_that_does_not_describe_the_dumps_is_refused_in_one_line(tmp_path, entry, dump, said):
    path = _pg_folder(tmp_path, entry, dump)
    with pytest.raises(OpsError) as exc:
        fmt.read_manifest(path)
    assert str(exc.value).startswith(f"backup {path.name} is incomplete: manifest.json: ") and said in str(exc.value)
    assert "\n" not in str(exc.value)


def test_a_format_this_release_does_not_know_is_refused(tmp_path):
    path = _pg_folder(tmp_path)
    (path / "manifest.json").write_text(json.dumps({**json.loads((path / "manifest.json").read_text()), "format": 4}))
    with pytest.raises(OpsError, match=r"is in format 4, newer than this release reads \(3\): restore it with"):
        fmt.read_manifest(path)


def test_the_dump_check_output_gives_the_time_the_version_and_each_tables_rows():
    from ops.data import postgres_data as pg

    out = (f"{pg.CREATED} 2026-12-07 16:57:32 UTC\n{pg.VERSION} 17.12 (Debian 17.12-0+deb13u1)\n"
           f'{pg.ROWS}\t50\tpublic.notes\n{pg.ROWS}\t0\tpublic."user"\n')
    assert pg.parse_check(out) == {k: v for k, v in PG_ENTRY.items() if k != "file"}
    assert pg.counts_problem(PG_ENTRY["tables"], dict(PG_ENTRY["tables"])) is None
    assert pg.counts_problem(PG_ENTRY["tables"], {"public.notes": 49, 'public."user"': 0}) == \
        "table public.notes has 49 rows, the backup 50"
    assert pg.counts_problem(PG_ENTRY["tables"], {"public.notes": 50}) == 'table public."user" is missing (0 rows in ' \
        'the backup)'


def test_postgres_jobs_carry_no_password_and_talk_to_the_server_only_when_they_must(tmp_path):
    from ops.data import postgres_data as pg

    argv = pg.job_argv("j", "pg_dump", ["--dbname=host=postgres"], uid=pg.IMAGE_UID, network=pg.NETWORK,
                       mounts={"/x/pgpass": f"{pg.PASSFILE}:ro"}, passfile=True)
    pairs = set(zip(argv, argv[1:], strict=False))
    assert {("--network", INSTANCE.network(pg.NETWORK)), ("--cap-drop", "ALL"), ("--user", "10004:10004"),
            ("-e", f"PGPASSFILE={pg.PASSFILE}"), ("--security-opt", "no-new-privileges:true")} <= pairs
    assert "--read-only" in argv and argv[argv.index("--entrypoint") + 2] == INSTANCE.image("postgres")
    check = pg.job_argv("j", "sh", [], uid=0, network=None, mounts={})
    assert ("--network", "none") in set(zip(check, check[1:], strict=False)) and "PGPASSFILE" not in " ".join(check)
    assert "sslmode=verify-full" in pg._conninfo("pgb") and "password" not in pg._conninfo("pgb")


# ---- format 3: tenant sections, one-tenant backups and their keys file ----------------------------------------
RECORDS = [(b"tenant-b:str", -1, b"\x00\x05hello"), (b"tenant-b:ttl", 1_900_000_000_000, b"\x00\x01x" * 100),
           (b"tenant-b:" + bytes(range(256)), -1, b"")]


def _tenant_folder(tmp_path, records=RECORDS):
    path = tmp_path / "tenant-b" / "20261207T200000Z"
    (path / "redis").mkdir(parents=True)
    counts = fmt.write_keys(path / fmt.KEYS_FILE, records)
    (path / "tenants" / "b").mkdir(parents=True)
    (path / "tenants" / "b" / "db.sqlite3").write_bytes(b"not checked here")
    fmt.write_manifest(path, {**fmt.server_meta(VALKEY_INFO), "postgres": {}}, ["b"], scope=fmt.TENANT,
                       sections={"b": counts})
    return path


def test_a_keys_file_gives_back_every_record_as_written(tmp_path):
    path = tmp_path / "keys.bin"
    size = sum(len(k) + len(p) for k, _, p in RECORDS)
    assert fmt.write_keys(path, RECORDS) == {"keys": 3, "expires": 1, "bytes": size}
    assert list(fmt.read_keys(path)) == RECORDS
    assert fmt.write_keys(path, []) == {"keys": 0, "expires": 0, "bytes": 0} and list(fmt.read_keys(path)) == []


@pytest.mark.parametrize("cut", [1, 8, 11, 30, -1])
def test_a_cut_or_garbled_keys_file_is_refused_in_one_line(tmp_path, cut):
    path = tmp_path / "keys.bin"
    fmt.write_keys(path, RECORDS)
    data = path.read_bytes()
    path.write_bytes(data[:cut] if cut > 0 else data[:-1] + b"\x07")
    with pytest.raises(OpsError) as exc:
        list(fmt.read_keys(path, "20261207T200000Z"))
    line = str(exc.value)
    assert line.startswith("backup 20261207T200000Z is corrupt: redis/keys.bin ") and "\n" not in line


def test_a_one_tenant_manifest_has_the_same_format_with_one_tenant_section(tmp_path):
    manifest = fmt.read_manifest(_tenant_folder(tmp_path))
    assert manifest["format"] == fmt.FORMAT and fmt.scope_of(manifest) == fmt.TENANT and manifest["tenants"] == ["b"]
    assert fmt.tenant_sections_of(manifest) == {"b": {"keys": 3, "expires": 1, "database": "sqlite",
                                                      "files": [fmt.KEYS_FILE, "tenants/b/db.sqlite3"]}}


def test_a_whole_manifest_carries_each_tenants_key_counts(tmp_path):
    path = _folder(tmp_path, {**fmt.server_meta(VALKEY_INFO), "keyspace": {}})
    fmt.write_manifest(path, {**fmt.server_meta(VALKEY_INFO), "keyspace": {}}, ["a"],
                       sections={"a": {"keys": 7, "expires": 2}, "b": {"keys": 3, "expires": 0}})
    sections = fmt.tenant_sections_of(fmt.read_manifest(path))
    assert sections["a"] == {"keys": 7, "expires": 2, "database": None, "files": []} and sections["b"]["keys"] == 3


def test_older_whole_manifests_have_no_tenant_sections(tmp_path):
    path = _folder(tmp_path, {"redis_version": "7.0.15", "keyspace": {}})
    manifest = json.loads((path / "manifest.json").read_text())
    for old in (1, 2):
        (path / "manifest.json").write_text(json.dumps({k: v for k, v in manifest.items()
                                                        if k not in ("scope", "tenant_sections")} | {"format": old}))
        read = fmt.read_manifest(path)
        assert fmt.scope_of(read) == fmt.WHOLE and fmt.tenant_sections_of(read) is None


@pytest.mark.parametrize(("change", "said"), [
    (lambda m: m["tenant_sections"]["b"].update(keys="3"), "section of tenant b lacks its key counts"),
    (lambda m: m["tenant_sections"].update(c=m["tenant_sections"]["b"]), "exactly one tenant section"),
    (lambda m: m["files"].pop(fmt.KEYS_FILE), "names files it does not list"),
    (lambda m: m.update(scope="some"), "no valid scope"),
])
def test_a_one_tenant_manifest_that_does_not_describe_it_is_refused(tmp_path, change, said):
    path = _tenant_folder(tmp_path)
    manifest = json.loads((path / "manifest.json").read_text())
    change(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(OpsError, match=said):
        fmt.read_manifest(path)


def test_a_keys_file_that_does_not_hold_the_recorded_count_fails_verify(tmp_path):
    path = _tenant_folder(tmp_path)
    fmt.write_keys(path / fmt.KEYS_FILE, RECORDS[:2])
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["files"][fmt.KEYS_FILE] = {"size": (path / fmt.KEYS_FILE).stat().st_size,
                                        "sha256": fmt.sha256(path / fmt.KEYS_FILE)}
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(OpsError, match=r"is corrupt: redis/keys.bin holds 2 keys \(1 with a TTL\), manifest.json "
                                       r"says 3 \(1\)"):
        fmt.verify(path, log=lambda m: None)


def test_sweeping_finds_unfinished_folders_of_one_tenant_backups_and_archives(tmp_path, monkeypatch):
    monkeypatch.setattr(fmt, "BACKUPS", tmp_path)
    for folder in ("tenant-b/.20261207T200000Z.partial", "tenant-b/.pre-restore-20261207T200000Z.partial",
                   "archives/.c-20261207T200000Z.partial", ".20261207T200000Z.partial", "tenant-b/20261207T200001Z"):
        (tmp_path / folder).mkdir(parents=True)
    assert len(fmt.sweep_partials()) == 4
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == [
        "archives", "tenant-b", "tenant-b/20261207T200001Z"]
