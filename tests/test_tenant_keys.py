"""One tenant's keys out and back in by DUMP and RESTORE ... REPLACE ABSTTL, against the real server (fast: the local
server of tests/support/local_redis.py): every type, value and absolute expiry; only that prefix; and the free-memory
refusal of a restore."""
import pytest

from deployment import acl, naming
from ops.core.errors import OpsError
from ops.data import backup_format as fmt
from ops.data import tenant_keys, tenant_restore

P = naming.key_prefix("b") + "tk:"
TTL_MS = 3_600_000


def _write(c) -> None:
    c.set(P + "str", "v")
    c.set(P + "bin", bytes(range(256)), px=TTL_MS)
    c.hset(P + "hash", mapping={"f": "1"})
    c.rpush(P + "list", *range(20))
    c.sadd(P + "set", "x", "y")
    c.zadd(P + "zset", {"m": 1.5})
    c.zadd(P + "zset-ttl", {"m": 2})
    c.pexpire(P + "zset-ttl", TTL_MS)
    c.xadd(P + "stream", {"e": "1"})
    for i in range(2100):  # more than two batches
        c.set(f"{P}many:{i}", i)


def _snapshot(c, prefix=P) -> dict:
    read = {"string": c.get, "hash": c.hgetall, "list": lambda k: c.lrange(k, 0, -1), "set": c.smembers,
            "zset": lambda k: c.zrange(k, 0, -1, withscores=True), "stream": c.xrange}
    return {k: (c.type(k), read[c.type(k).decode()](k), c.execute_command("PEXPIRETIME", k))
            for k in c.scan_iter(match=prefix + "*", count=1000)}


@pytest.fixture
def op(local_redis):
    c = local_redis.client()
    yield c
    for prefix in (P, naming.key_prefix("a") + "tk:"):
        for key in list(c.scan_iter(match=prefix + "*", count=1000)):
            c.unlink(key)


def test_a_prefix_goes_out_to_a_keys_file_and_comes_back_exactly_leaving_other_prefixes_alone(op, tmp_path):
    _write(op)
    op.set(naming.key_prefix("a") + "tk:mine", "a's")
    expected = _snapshot(op)
    path = tmp_path / "keys.bin"
    counts = fmt.write_keys(path, tenant_keys.records(op, P))
    assert counts["keys"] == len(expected) and counts["expires"] == 2  # noqa: PLR2004
    op.hset(P + "hash", "f", "changed")
    op.set(P + "newer", "gone after the restore")
    op.persist(P + "bin")
    assert op.execute_command("UNLINK", *op.scan_iter(match=P + "*", count=5000)) == len(expected) + 1
    restored = tenant_keys.restore_records(op, fmt.read_keys(path), log=lambda m: None)
    assert restored == counts
    assert _snapshot(op) == expected and tenant_keys.count(op, P) == len(expected)
    assert op.get(naming.key_prefix("a") + "tk:mine") == b"a's"


def test_a_key_whose_expiry_passed_since_the_backup_is_not_restored(op, tmp_path):
    path = tmp_path / "keys.bin"
    op.set(P + "gone", "x", px=TTL_MS)
    payload = op.dump(P + "gone")
    op.unlink(P + "gone")
    fmt.write_keys(path, [(f"{P}gone".encode(), 1_000, payload), (f"{P}kept".encode(), -1, payload)])
    done = tenant_keys.restore_records(op, fmt.read_keys(path))
    assert done == {"keys": 2, "expires": 1, "bytes": done["bytes"]}
    assert op.exists(P + "gone") == 0 and op.get(P + "kept") == b"x"
    assert tenant_restore.count_problem(done, tenant_keys.count(op, P)) is None  # an expired one is not a mismatch
    assert tenant_restore.count_problem(done, 0) is not None


def test_keys_that_do_not_fit_the_free_memory_are_refused_in_one_line(local_redis, op):
    config = local_redis.redis_env[acl.RENAMED["CONFIG"]]
    reply = op.execute_command(config, "GET", "maxmemory")
    limit = reply[1] if isinstance(reply, list) else next(iter(reply.values()))
    used = int(op.info("memory")["used_memory"])
    try:
        op.execute_command(config, "SET", "maxmemory", str(used + 4 * 1024 * 1024))
        tenant_restore.check_memory(op, 1024 * 1024, "b")  # fits
        with pytest.raises(OpsError) as exc:
            tenant_restore.check_memory(op, 8 * 1024 * 1024, "b")
        assert "free of its maxmemory" in str(exc.value) and "nothing was changed" in str(exc.value)
        assert "\n" not in str(exc.value)
    finally:
        op.execute_command(config, "SET", "maxmemory", limit)
