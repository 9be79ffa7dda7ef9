"""One tenant backed up and restored alone (`backup --tenant b`, `restore BACKUP --tenant b`) while tenant a serves:
b's keyspace comes back exactly (every type, value and absolute expiry; newer keys gone), its queued tasks run
again, a loses no request, no task and no key; bad input is refused in one line with nothing changed; a restore
SIGKILLed mid-way is finished or rolled back by `recover`."""
import json
import re
import shutil
import threading
from pathlib import Path

import pytest

from deployment import naming
from ops.config.paths import BACKUPS
from ops.data import backup_format as fmt
from ops.data import journal as jn
from ops.deploy import compose
from tests.support import deployment as d
from tests.support import faults, load_loop

pytestmark = pytest.mark.usefixtures("tenants_up")
P = naming.key_prefix("b")
TR = P + "tr:"  # this file's keys of b (its Celery keys change as its worker runs: compared apart)
TTL_MS = 3_600_000
B_SERVICES = [naming.service_name("b", r) for r in naming.ROLES]


def _write_b(c, many: int = 0) -> None:
    """Keys of every type under b's prefix, with and without a TTL (and `many` small strings, to span batches)."""
    c.set(P + "tr:str", "value")
    c.set(P + "tr:bin", bytes(range(256)))
    c.hset(P + "tr:hash", mapping={"f1": "1", "f2": "two"})
    c.rpush(P + "tr:list", *[f"item-{i}" for i in range(30)])
    c.sadd(P + "tr:set", "x", "y", "z")
    c.zadd(P + "tr:zset", {"m1": 1.5, "m2": 2.5})
    c.xadd(P + "tr:stream", {"event": "one"})
    c.xadd(P + "tr:stream", {"event": "two"})
    c.set(P + "tr:str-ttl", "expiring", px=TTL_MS)
    c.hset(P + "tr:hash-ttl", mapping={"a": "b"})
    c.pexpire(P + "tr:hash-ttl", TTL_MS)
    c.rpush(P + "tr:list-ttl", "l")
    c.pexpire(P + "tr:list-ttl", TTL_MS)
    c.zadd(P + "tr:zset-ttl", {"z": 1})
    c.pexpire(P + "tr:zset-ttl", TTL_MS)
    c.xadd(P + "tr:stream-ttl", {"e": "1"})
    c.pexpire(P + "tr:stream-ttl", TTL_MS * 2)
    if many:
        pipe = c.pipeline(transaction=False)
        for i in range(many):
            pipe.set(f"{P}tr:many:{i}", i)
        pipe.execute()


def _keyspace(c, prefix: str = TR) -> dict:
    """key -> (type, value, absolute expiry in ms: PEXPIRETIME, -1 when none) of every key under prefix."""
    read = {"string": c.get, "hash": c.hgetall, "list": lambda k: c.lrange(k, 0, -1), "set": c.smembers,
            "zset": lambda k: c.zrange(k, 0, -1, withscores=True), "stream": c.xrange,
            "none": lambda k: None}
    out = {}
    for key in c.scan_iter(match=prefix + "*", count=1000):
        kind = c.type(key).decode()
        out[key] = (kind, read[kind](key), c.execute_command("PEXPIRETIME", key))
    return out


def _restore(backup: str, *args: str, check: bool = True):
    return d.invoke("restore", backup, "--tenant", "b", "--yes", *args, check=check)


def _tenant_backup(name: str = "b") -> str:
    """The folder name of a new one-tenant backup, under backups/tenant-<name>/."""
    out = d.invoke("backup", "--tenant", name).stdout
    match = re.search(rf"backup: tenant {name}: verified: (\S+)", out)
    assert match, out
    assert Path(match.group(1)).parent == BACKUPS / f"tenant-{name}", match.group(1)
    return Path(match.group(1)).name


def _no_partials() -> bool:
    return not faults.partials() and not list(BACKUPS.glob("*/.*.partial"))


def _change_b(c) -> None:
    """What b does after its backup: new keys, deleted keys, changed values, a changed TTL."""
    c.set(P + "tr:new", "not in the backup")
    c.delete(P + "tr:set", P + "tr:stream-ttl")
    c.hset(P + "tr:hash", "f1", "changed")
    c.rpush(P + "tr:list", "appended")
    c.persist(P + "tr:str-ttl")


def _started(services) -> dict:
    return {s: d.inspect(d.container(s))["State"]["StartedAt"] for s in services}


@pytest.fixture
def clean_b():
    yield
    c = d.client()
    keys = list(c.scan_iter(match=TR + "*", count=1000))
    for i in range(0, len(keys), 1000):
        c.unlink(*keys[i:i + 1000])
    d.invoke("up", "--tenant", "a", "--tenant", "b")


def test_one_tenant_restore_brings_back_its_keyspace_while_the_other_tenant_serves(clean_b):
    c = d.client()
    # b's worker stopped while posting: the tasks stay queued and are in the backup.
    compose.run("stop", naming.service_name("b", "worker"), profiles=compose.all_profiles(), quiet=True)
    queued = [d.post_echo("b", f"queued-{i}") for i in range(3)]
    _write_b(c)
    expected = _keyspace(c)
    path = BACKUPS / "tenant-b" / _tenant_backup("b")
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["format"] == fmt.FORMAT and manifest["scope"] == fmt.TENANT and manifest["tenants"] == ["b"]
    section = manifest["tenant_sections"]["b"]
    assert section["keys"] >= len(expected) + 1 and section["database"] == "sqlite", section  # + its queue
    d.invoke("up", "--tenant", "b")  # the worker runs the queued tasks now; the restore brings them back
    d.wait_for_results("b", queued)
    _change_b(c)
    c.set("tenant-a:tr:after-backup", "a's, written after b's backup")

    during, stop = [], threading.Event()

    def write_a():  # a's own keys, written while b is restored: every one must stay
        while not stop.is_set():
            key = f"tenant-a:tr:during:{len(during)}"
            c.set(key, "a's")
            during.append(key)
            stop.wait(0.05)
    writer = threading.Thread(target=write_a, daemon=True)
    with load_loop.Load("a") as load:
        writer.start()
        out = _restore(path.name).stdout
        stop.set()
        writer.join()
    report = load.finish()
    print(report.line())
    try:
        assert report.failed_requests == [] and report.lost_tasks == [], report.line()
        assert _keyspace(c) == expected  # types, values, absolute expiries; b's newer key is gone
        again = re.search(r"tenant b: (\d+) task\(s\) will run again \((\d+) queued, (\d+) unacknowledged", out)
        assert again and int(again.group(2)) >= 3, out
        d.wait_for_results("b", queued)  # run again after the restore: the restored database had no result
        assert c.get("tenant-a:tr:after-backup") is not None and during
        assert all(c.exists(k) for k in during)
        assert (BACKUPS / "tenant-b").is_dir() and list((BACKUPS / "tenant-b").glob("pre-restore-*"))
        assert _no_partials() and not jn.JOURNAL.exists()
    finally:
        c.delete("tenant-a:tr:after-backup", *during)


def test_one_tenant_restore_from_a_whole_backup(clean_b):
    c = d.client()
    _write_b(c)
    expected = _keyspace(c)
    out = d.invoke("backup").stdout
    stamp = re.search(r"verified in [\d.]+s: \S*?(\d{8}T\d{6}Z)", out).group(1)
    manifest = json.loads((BACKUPS / stamp / "manifest.json").read_text())
    assert manifest["tenant_sections"]["b"]["keys"] >= len(expected), manifest["tenant_sections"]
    _change_b(c)
    c.set("tenant-a:tr:after-whole", "stays")
    try:
        out = _restore(stamp).stdout
        assert _keyspace(c) == expected, out
        assert c.get("tenant-a:tr:after-whole") == b"stays"
    finally:
        c.delete("tenant-a:tr:after-whole")


@pytest.fixture(scope="module")
def b_backup():
    c = d.client()
    _write_b(c)
    yield _tenant_backup("b")


def _refused(args: list[str], said: str) -> None:
    c = d.client()
    before, started = _keyspace(c), _started(B_SERVICES)
    proc = d.invoke("restore", *args, "--yes", check=False)
    line = faults.one_error_line(proc.stderr)
    assert proc.returncode == 2 and said in line, line
    assert _keyspace(c) == before and _started(B_SERVICES) == started and not jn.JOURNAL.exists()


def test_an_unknown_tenant_is_refused(b_backup):
    _refused([b_backup, "--tenant", "zz"], "unknown tenant 'zz'")


def test_a_tenant_the_backup_does_not_hold_is_refused(b_backup):
    a_backup = _tenant_backup("a")
    _refused([str(BACKUPS / "tenant-a" / a_backup), "--tenant", "b"], f"tenant b is not in backup {a_backup}")


def test_a_whole_restore_of_a_one_tenant_backup_is_refused(b_backup):
    _refused([str(BACKUPS / "tenant-b" / b_backup)], "is a one-tenant backup (of b)")


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_a_tampered_backup_is_refused(b_backup, damage, tmp_path):
    copy = tmp_path / b_backup
    shutil.copytree(BACKUPS / "tenant-b" / b_backup, copy)
    keys = copy / fmt.KEYS_FILE
    data = bytearray(keys.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
    else:
        del data[len(data) // 2:]
    keys.write_bytes(bytes(data))
    _refused([str(copy), "--tenant", "b"], f"backup {b_backup} is corrupt: {fmt.KEYS_FILE}")


# ---- interrupted restores and `recover` ------------------------------------------------------------------------
@pytest.mark.parametrize(("step", "rollback", "told"), [
    ("restoring-keys", False, "recover: finished: tenant b is restored"),  # CI's SIGKILL mid-way test
    ("checking-keys", True, "recover: rolled back: tenant b's data from before the restore is live again"),
    ("stopped-tenant", False, "recover: nothing of tenant b had been changed yet"),
])
def test_a_killed_tenant_restore_is_finished_or_rolled_back_by_recover(step, rollback, told, tmp_path, clean_b):
    c = d.client()
    _write_b(c, many=2500)  # three RESTORE batches: the kill at restoring-keys leaves b half restored
    backed_up = _keyspace(c)
    backup = _tenant_backup("b")
    _change_b(c)
    changed = _keyspace(c)
    c.set("tenant-a:tr:fault", "a's")
    try:
        faults.killed_at(["restore", backup, "--tenant", "b", "--yes"], step, tmp_path)
        if step == "restoring-keys":
            assert 0 < len(_keyspace(c)) < len(backed_up)  # mid-way indeed
        refused = d.invoke("up", "--tenant", "b", check=False)
        line = faults.one_error_line(refused.stderr)
        assert "a restore of tenant b from backup" in line and "./invoke recover" in line, line
        out = d.invoke("recover", *(["--rollback"] if rollback else [])).stdout
        assert told in out, out
        assert _keyspace(c) == (changed if rollback or step == "stopped-tenant" else backed_up)
        assert c.get("tenant-a:tr:fault") == b"a's"
        assert all(d.inspect_running(s) for s in B_SERVICES)
        assert _no_partials() and not jn.JOURNAL.exists()
    finally:
        c.delete("tenant-a:tr:fault")
