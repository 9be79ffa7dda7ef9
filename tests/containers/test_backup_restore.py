"""Backups are complete and verified; restore brings back exactly what was saved, or refuses and changes nothing."""
import base64
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from ops.config.paths import BACKUPS, INSTANCE
from ops.config.tenants import known_names
from ops.deploy import compose, connlimit
from tests.support import deployment as d

pytestmark = pytest.mark.usefixtures("tenants_up")
TTL_MS = 3_600_000


def _write_dataset(c) -> list[bytes]:
    keys = []
    for t in ("a", "b"):
        p = f"tenant-{t}:bk:"
        c.set(p + "str", f"value-{t}")
        c.hset(p + "hash", mapping={"f1": "1", "f2": t})
        c.rpush(p + "list", *[f"item-{i}" for i in range(50)])
        c.sadd(p + "set", "x", "y", t)
        c.zadd(p + "zset", {"m1": 1.5, "m2": 2.5})
        c.set(p + "ttl", "expiring", px=TTL_MS)
        c.hset(p + "hash-ttl", mapping={"a": "b"})
        c.pexpire(p + "hash-ttl", TTL_MS)
        keys += [(p + s).encode() for s in ("str", "hash", "list", "set", "zset", "ttl", "hash-ttl")]
    return keys


def _snapshot(c, keys) -> dict:
    """Value (by type) and absolute expiry (PEXPIRETIME: -1 none, -2 missing) of each key."""
    snap = {}
    for k in keys:
        kind = c.type(k).decode()
        value = {"string": c.get, "hash": c.hgetall, "list": lambda x: c.lrange(x, 0, -1), "set": c.smembers,
                 "zset": lambda x: c.zrange(x, 0, -1, withscores=True), "none": lambda x: None}[kind](k)
        snap[k] = (kind, value, c.execute_command("PEXPIRETIME", k))
    return snap


def _backup() -> str:
    out = d.invoke("backup").stdout
    match = re.search(r"verified in [\d.]+s: (\S+)", out)
    assert match, out
    return match.group(1)


def test_round_trip_restores_every_key_value_ttl_and_tenant_row():
    c = d.client()
    done_before = {t: [d.post_echo(t, f"before-{t}-{i}") for i in range(5)] for t in ("a", "b")}
    results_before = {t: d.wait_for_results(t, ids) for t, ids in done_before.items()}
    compose.run("stop", d_service("b", "worker"), profiles=compose.all_profiles(), quiet=True)
    queued = [d.post_echo("b", f"queued-{i}") for i in range(3)]
    keys = _write_dataset(c)
    expected = _snapshot(c, keys)
    try:
        path = _backup()
        manifest = json.loads((BACKUPS / path.rsplit("/", 1)[-1] / "manifest.json").read_text())
        server = manifest["server"]
        assert set(manifest["tenants"]) == {"a", "b"} and server["name"] == "valkey", manifest
        assert server["version"].startswith("8.1.") and server["redis_version"].startswith("7.2."), server
        assert manifest["redis_version"] == server["redis_version"]  # kept for tooling that reads only that
        expected_files = {"redis/dump.rdb", "redis/appendonlydir/appendonly.aof.manifest", "tenants/a/db.sqlite3"}
        assert expected_files <= set(manifest["files"])

        c.delete(b"tenant-a:bk:str")
        c.hset("tenant-b:bk:hash", "f1", "changed")
        c.set("tenant-b:bk:new", "not in the backup")
        c.persist("tenant-a:bk:ttl")
        after_backup = [d.post_echo("a", f"after-{i}") for i in range(2)]
        d.wait_for_results("a", after_backup)

        out = d.invoke("restore", path, "--yes").stdout
        assert "key counts match the manifest" in out and "pre-restore-" in out
        assert connlimit.check(known_names()) == []  # the restarted Redis has its per-tenant caps again

        assert _snapshot(c, keys) == expected
        assert c.exists("tenant-b:bk:new") == 0
        for t, ids in done_before.items():
            for task_id in ids:
                code, body = d.task_status(t, task_id)
                assert (code, body) == (200, results_before[t][task_id])
        assert all(d.task_status("a", task_id)[0] == 404 for task_id in after_backup)

        # With appendonly yes, the restored data must survive a further restart (the RDB-only trap).
        compose.run("restart", "redis", profiles=compose.all_profiles(), quiet=True)
        d.invoke("up")
        assert _snapshot(c, keys) == expected

        # Tasks that were queued at backup time run once their worker is back.
        d.invoke("up", "--tenant", "b")
        results = d.wait_for_results("b", queued, timeout=120)
        assert sorted(r["result"]["value"] for r in results.values()) == ["queued-0", "queued-1", "queued-2"]
    finally:
        d.invoke("up", "--tenant", "a", "--tenant", "b")
        c.delete(*keys, "tenant-b:bk:new")


def d_service(tenant: str, role: str) -> str:
    from deployment import naming

    return naming.service_name(tenant, role)


@pytest.fixture(scope="module")
def good_backup():
    d.client().set("tenant-a:bk:sentinel", "keep-me")
    d.post_echo("a", "for-the-backup")
    yield BACKUPS / _backup().rsplit("/", 1)[-1]
    d.client().delete("tenant-a:bk:sentinel")


def _live_state():
    c = d.client()
    started = {s: d.inspect(d.container(s))["State"]["StartedAt"] for s in ("redis", "tenant-a-worker", "tenant-a-web")}
    return started, c.get("tenant-a:bk:sentinel"), c.lastsave()


def pytest_generate_tests(metafunc):
    if "mutation" in metafunc.fixturenames:
        names = ["manifest.json", "redis/dump.rdb", "redis/appendonlydir/appendonly.aof.manifest",
                 "redis/appendonlydir/appendonly.aof.1.incr.aof", "tenants/a/db.sqlite3", "tenants/b/db.sqlite3"]
        metafunc.parametrize("mutation", [(f, m) for f in names for m in ("flip", "truncate", "delete")],
                             ids=lambda x: f"{x[1]}-{x[0].replace('/', '_')}")


def _mutate(path, mode):
    if mode == "delete":
        path.unlink()
    elif mode == "truncate":
        with open(path, "r+b") as fh:
            fh.truncate(max(0, path.stat().st_size // 2))
    else:
        data = bytearray(path.read_bytes())
        i = len(data) // 2
        data[i] ^= 0xFF
        path.write_bytes(bytes(data))


def test_corrupt_backup_is_refused_and_live_data_unchanged(good_backup, mutation, tmp_path):
    rel, mode = mutation
    copy = tmp_path / good_backup.name
    shutil.copytree(good_backup, copy)
    target = copy / rel
    if not target.exists():  # e.g. the incr AOF got another sequence number
        target = next(copy.glob(rel.replace(".1.", ".*.")))
    _mutate(target, mode)
    before = _live_state()
    proc = d.invoke("restore", str(copy), "--yes", check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    line = proc.stderr.strip()
    assert "\n" not in line and line.startswith("error: backup ") and ("corrupt" in line or "incomplete" in line)
    assert _live_state() == before


# Each checker's own diagnosis, as it words it (never our fallback), then its exit status.
CHECKER_SAID = {"valkey-check-rdb": r"\[offset \d+\] .+", "valkey-check-aof": r"AOF appendonly\.aof\.\d+\.incr\.aof .+"}


AOF_MANIFEST = "redis/appendonlydir/appendonly.aof.manifest"


@pytest.mark.parametrize(("target", "checker", "named"), [
    ("redis/dump.rdb", "valkey-check-rdb", "redis/dump.rdb"),
    ("redis/appendonlydir/appendonly.aof.1.incr.aof", "valkey-check-aof", AOF_MANIFEST),
])
def test_corruption_with_matching_checksums_is_caught_by_the_servers_checkers(good_backup, target, checker, named,
                                                                              tmp_path):
    copy = tmp_path / good_backup.name
    shutil.copytree(good_backup, copy)
    path = next(copy.glob(target.replace(".1.", ".*.")))
    _garble_keeping_checksums(copy, path)
    before = _live_state()
    proc = d.invoke("restore", str(copy), "--yes", check=False)
    line = proc.stderr.strip()
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert re.fullmatch(rf"error: backup {copy.name} is corrupt: {re.escape(named)} failed {checker}: "
                        rf"{CHECKER_SAID[checker]} \(exit [1-9]\d*\)", line), line
    assert _live_state() == before


def _garble_keeping_checksums(copy, path) -> None:
    """Garbage in the second half of path; the manifest rewritten to match, so only a checker can tell."""
    from ops.data import backup_format as bk

    data = bytearray(path.read_bytes())
    data[len(data) // 2:] = b"\x00garbage" * 4
    path.write_bytes(bytes(data))
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"][str(path.relative_to(copy))] = {"size": path.stat().st_size, "sha256": bk.sha256(path)}
    (copy / "manifest.json").write_text(json.dumps(manifest))


@pytest.fixture
def host_checkers_forbidden(tmp_path, monkeypatch):
    """Every checker name on the host answers with a failure and leaves a trace: if verify used one, it shows."""
    bindir, trace = tmp_path / "host-bin", tmp_path / "host-checker-used"
    bindir.mkdir()
    for name in ("valkey-check-rdb", "valkey-check-aof", "redis-check-rdb", "redis-check-aof"):
        fake = bindir / name
        fake.write_text(f"#!/bin/sh\necho {name} >> {trace}\nexit 99\n")
        fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    yield trace
    assert not trace.exists(), f"a host checker ran: {trace.read_text()}"


def _files(path) -> dict:
    from ops.data import backup_format as bk

    return {p: (p.stat().st_mtime_ns, p.stat().st_mode, bk.sha256(p)) for p in sorted(path.rglob("*")) if p.is_file()}


def test_verify_runs_the_server_images_checkers_never_a_hosts(good_backup, tmp_path, host_checkers_forbidden):
    from ops.core.errors import OpsError
    from ops.data import backup_format as bk

    # The folder the checkers' container gets, read-only (the SQLite check runs here, in this process).
    before, said = _files(good_backup / "redis"), []
    manifest = bk.verify(good_backup, log=said.append)
    assert manifest["server"]["name"] == "valkey"
    assert f"verify: valkey-check-rdb and valkey-check-aof of {INSTANCE.image('redis')} OK " \
           f"(written by valkey {manifest['server']['version']})" in said, said
    assert _files(good_backup / "redis") == before  # valkey-check-aof opens its files read-write: it saw a copy

    copy = tmp_path / good_backup.name
    shutil.copytree(good_backup, copy)
    rdb = copy / "redis" / "dump.rdb"
    with open(rdb, "r+b") as fh:
        fh.truncate(rdb.stat().st_size // 2)
    manifest["files"]["redis/dump.rdb"] = {"size": rdb.stat().st_size, "sha256": bk.sha256(rdb)}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(OpsError) as exc:
        bk.verify(copy, log=lambda m: None)
    assert re.fullmatch(rf"backup {copy.name} is corrupt: redis/dump.rdb failed valkey-check-rdb: \[offset \d+\] "
                        r"Unexpected EOF reading RDB file \(exit 1\)", str(exc.value)), exc.value


@pytest.mark.parametrize(("image", "expected"), [
    ("missing", r"the server image \S+ is missing \(valkey-check-rdb and valkey-check-aof run from it, never from "
                r"the host\): build it with `\./invoke build`"),
    ("debian:trixie-slim", r"the server image debian:trixie-slim has no valkey-check-rdb \(built before the move to "
                           r"Valkey\?\): rebuild it with `\./invoke build`"),
])
def test_verify_without_the_checkers_image_refuses_and_says_how_to_build_it(good_backup, image, expected, monkeypatch,
                                                                            host_checkers_forbidden):
    """The checkers come from the image verify names: an image without them (or none) is one line, never a pass."""
    from ops.core.errors import OpsError
    from ops.data import backup_format as bk

    name = f"{INSTANCE.image('redis')}-gone" if image == "missing" else image
    monkeypatch.setattr(bk, "server_image", lambda: name)
    with pytest.raises(OpsError) as exc:
        bk.verify(good_backup, log=lambda m: None)
    assert re.fullmatch(rf"cannot check backup {good_backup.name}: {expected}", str(exc.value)), exc.value


def test_restore_refuses_without_yes_when_stdin_is_not_a_terminal(good_backup):
    before = _live_state()
    proc = d.invoke("restore", good_backup.name, check=False, input="")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: restore replaces live data and stdin is not a terminal: add --yes to confirm"
    assert _live_state() == before


def test_unknown_backup_is_named():
    proc = d.invoke("restore", "19990101T000000Z", "--yes", check=False)
    assert proc.returncode == 2 and proc.stderr.startswith("error: backup '19990101T000000Z' not found")


def test_bgsave_reports_success_only_after_lastsave_moved():
    c = d.client()
    before = c.lastsave()
    out = d.invoke("bgsave").stdout
    assert re.search(r"bgsave: done in [\d.]+s", out)
    assert c.lastsave() > before
    assert c.info("persistence")["rdb_last_bgsave_status"] == "ok"


def test_backup_retention_removes_only_the_oldest_after_verifying(tmp_path):
    from ops.data import backup_format as bk

    for _ in range(2):
        _backup()
    existing = bk.complete_backups()
    newest = _backup_with_keep(2)
    remaining = bk.complete_backups()
    assert len(remaining) == 2 and remaining[-1].name == newest and remaining[0] == existing[-1]


def _backup_with_keep(keep: int) -> str:
    out = d.invoke("backup", "--keep", str(keep)).stdout
    return re.search(r"verified in [\d.]+s: \S+/(\S+)", out).group(1)


def test_status_names_the_server_and_the_server_that_wrote_the_last_backup():
    name = _backup().rsplit("/", 1)[-1]
    doc = json.loads(d.invoke("status", "--json", check=False).stdout)  # exit 1 when some alert would fire
    r = doc["redis"]
    assert r["server"] == "valkey" and r["version"].startswith("8.1.") and r["redis_version"].startswith("7.2."), r
    assert doc["backup"]["name"] == name and doc["backup"]["server"] == {"name": "valkey", "version": r["version"]}
    screen = d.invoke("status", check=False).stdout
    assert re.search(rf"^Redis: valkey {re.escape(r['version'])}, up ", screen, re.MULTILINE), screen
    assert re.search(rf"^!?last verified backup: {name}, \S+ ago, written by valkey {re.escape(r['version'])}$", screen,
                     re.MULTILINE), screen


# A backup the previous release wrote: Debian 12's redis-server 7.0.15 (appendonly yes, aof-use-rdb-preamble yes):
# SET/HSET/RPUSH/SADD/ZADD/SET+PEXPIREAT/XADD, then BGREWRITEAOF (the BASE, an RDB), then SET, INCR x3 and RPUSH
# (the INCR file), then SAVE (dump.rdb). Its manifest has that release's form: redis_version, no `server`.
LEGACY_FILES = {
    "dump.rdb": """
UkVESVMwMDEw+glyZWRpcy12ZXIGNy4wLjE1+gpyZWRpcy1iaXRzwED6BWN0aW1lwiCOFmv6CHVzZWQtbWVtwmDQEQD6CGFvZi1i
YXNlwAD+APsJAQAKbGVnYWN5OnN0chR3cml0dGVuIGJ5IHJlZGlzIDcuMAIKbGVnYWN5OnNldAMBeAF6AXkAFGxlZ2FjeTphZnRl
ci1yZXdyaXRlD2luIHRoZSBpbmNyIEFPRhELbGVnYWN5OnpzZXQZGQAAAAQAgm0xA4MxLjUEgm0yA4MyLjUE/xALbGVnYWN5Omhh
c2gWFgAAAAQAgmYxAwEBgmYyA4N0d28E/xILbGVnYWN5Omxpc3QBAhkZAAAABgCBYQKBYgKBYwKBZAKBZQKBZgL//ADYwyy7AwAA
AApsZWdhY3k6dHRsD2V4cGlyZXMgaW4gMjEwMBMNbGVnYWN5OnN0cmVhbQEQAAAAAAAAAAEAAAAAAAAAAR0dAAAACgABAQABAQGB
ZgIAAQIBAAEAAYF2AgQB/wEBAQEBAAABAAAObGVnYWN5OmNvdW50ZXLAA/8wYVZzE8vmCw==""",
    "appendonlydir/appendonly.aof.2.base.rdb": """
UkVESVMwMDEw+glyZWRpcy12ZXIGNy4wLjE1+gpyZWRpcy1iaXRzwED6BWN0aW1lwh+OFmv6CHVzZWQtbWVtwliuEAD6CGFvZi1i
YXNlwAH+APsHAQIKbGVnYWN5OnNldAMBeAF6AXkRC2xlZ2FjeTp6c2V0GRkAAAAEAIJtMQODMS41BIJtMgODMi41BP8QC2xlZ2Fj
eTpoYXNoFhYAAAAEAIJmMQMBAYJmMgODdHdvBP8TDWxlZ2FjeTpzdHJlYW0BEAAAAAAAAAABAAAAAAAAAAEdHQAAAAoAAQEAAQEB
gWYCAAECAQABAAGBdgIEAf8BAQEBAQAAAQD8ANjDLLsDAAAACmxlZ2FjeTp0dGwPZXhwaXJlcyBpbiAyMTAwEgtsZWdhY3k6bGlz
dAECFhYAAAAFAIFhAoFiAoFjAoFkAoFlAv8ACmxlZ2FjeTpzdHIUd3JpdHRlbiBieSByZWRpcyA3LjD/qXyDed6ebOc=""",
    "appendonlydir/appendonly.aof.2.incr.aof": """
KjINCiQ2DQpTRUxFQ1QNCiQxDQowDQoqMw0KJDMNCnNldA0KJDIwDQpsZWdhY3k6YWZ0ZXItcmV3cml0ZQ0KJDE1DQppbiB0aGUg
aW5jciBBT0YNCioyDQokNA0KaW5jcg0KJDE0DQpsZWdhY3k6Y291bnRlcg0KKjINCiQ0DQppbmNyDQokMTQNCmxlZ2FjeTpjb3Vu
dGVyDQoqMg0KJDQNCmluY3INCiQxNA0KbGVnYWN5OmNvdW50ZXINCiozDQokNQ0KcnB1c2gNCiQxMQ0KbGVnYWN5Omxpc3QNCiQx
DQpmDQo=""",
    "appendonlydir/appendonly.aof.manifest": """
ZmlsZSBhcHBlbmRvbmx5LmFvZi4yLmJhc2UucmRiIHNlcSAyIHR5cGUgYgpmaWxlIGFwcGVuZG9ubHkuYW9mLjIuaW5jci5hb2Yg
c2VxIDIgdHlwZSBpCg==""",
}
LEGACY_EXPIRY_MS = 4102444800000  # legacy:ttl's PEXPIREAT: 2100-01-01


def _legacy_backup(parent: Path) -> Path:
    from ops.data import backup_format as bk

    path = parent / "20261121T171241Z"
    for rel, text in LEGACY_FILES.items():
        (path / "redis" / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / "redis" / rel).write_bytes(base64.b64decode("".join(text.split())))
    bk.write_manifest(path, {"redis_version": "7.0.15", "keyspace": {"db0": {"keys": 9, "expires": 1}}}, [])
    bk.make_private(path)
    return path


def test_a_backup_written_by_redis_7_0_verifies_and_restores_into_valkey(tmp_path):
    source = _legacy_backup(tmp_path)
    assert "server" not in json.loads((source / "manifest.json").read_text())
    out = d.invoke("restore", str(source), "--yes").stdout
    aside = re.search(r"previous data kept in (\S+)", out).group(1)
    try:
        assert "(written by redis 7.0.15)" in out and "key counts match the manifest" in out, out
        c = d.client()
        assert c.info("server")["server_name"] == "valkey"
        assert c.get("legacy:str") == b"written by redis 7.0" and c.get("legacy:after-rewrite") == b"in the incr AOF"
        assert c.hgetall("legacy:hash") == {b"f1": b"1", b"f2": b"two"} and c.get("legacy:counter") == b"3"
        assert c.lrange("legacy:list", 0, -1) == [b"a", b"b", b"c", b"d", b"e", b"f"]
        assert c.smembers("legacy:set") == {b"x", b"y", b"z"}
        assert [tuple(m) for m in c.zrange("legacy:zset", 0, -1, withscores=True)] == [(b"m1", 1.5), (b"m2", 2.5)]
        assert c.xrange("legacy:stream") == [(b"1-1", {b"f": b"v"})]
        assert c.execute_command("PEXPIRETIME", "legacy:ttl") == LEGACY_EXPIRY_MS
    finally:  # the suite's own data back, whatever was found
        back = d.invoke("restore", aside, "--yes").stdout
    assert "key counts match the manifest" in back and d.client().exists("legacy:str") == 0
