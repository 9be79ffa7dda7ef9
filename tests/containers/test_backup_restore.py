"""Backups are complete and verified; restore brings back exactly what was saved, or refuses and changes nothing."""
import json
import re
import shutil

import pytest

from ops.config.paths import BACKUPS
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
        assert set(manifest["tenants"]) == {"a", "b"} and manifest["redis_version"].startswith("7.0")
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


@pytest.mark.parametrize("target", ["redis/dump.rdb", "redis/appendonlydir/appendonly.aof.1.incr.aof"])
def test_corruption_with_matching_checksums_is_caught_by_the_redis_checkers(good_backup, target, tmp_path):
    from ops.data import backup_format as bk

    copy = tmp_path / good_backup.name
    shutil.copytree(good_backup, copy)
    path = next(copy.glob(target.replace(".1.", ".*.")))
    data = bytearray(path.read_bytes())
    data[len(data) // 2:] = b"\x00garbage" * 4  # keeps checksums honest: manifest rewritten below
    path.write_bytes(bytes(data))
    manifest = json.loads((copy / "manifest.json").read_text())
    rel = str(path.relative_to(copy))
    manifest["files"][rel] = {"size": path.stat().st_size, "sha256": bk.sha256(path)}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    before = _live_state()
    proc = d.invoke("restore", str(copy), "--yes", check=False)
    assert proc.returncode == 2 and "failed redis-check-" in proc.stderr, proc.stderr
    assert _live_state() == before


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
