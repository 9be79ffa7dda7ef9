"""The deployed Redis against a compromised tenant a: the claims that are about the deployment itself.

tests/app/test_hostile_tenant.py tries every attack on the fast test server; here, on the real
containers, the Redis container's bounds come from the instance's env files, its healthcheck (re)loads
kombu's scripts whenever Redis lost them, and the issue's attacks sent with tenant a's real credentials
leave tenant b's task round trip (its web, worker and database) and Redis' run_id as they were.
"""
import hashlib
import subprocess

import pytest

import redis
from deployment import acl, lua, naming
from ops.deploy import connlimit, redis_admin
from tests.support import deployment as d

pytestmark = [pytest.mark.usefixtures("tenants_up"), pytest.mark.attacks]
A, B = naming.key_prefix("a"), naming.key_prefix("b")


def run_id() -> str:
    return d.client().info("server")["run_id"]


def b_round_trip() -> None:
    task_id = d.post_echo("b", {"hostile": "check"})
    assert d.wait_for_results("b", [task_id], timeout=60)[task_id]["result"]["tenant"] == "b"


def test_bounds_come_from_the_instance_env_files():
    c = d.client()
    mb = int(d.redis_env().get("REDIS_MAXMEMORY_MB") or "1024")
    assert redis_admin.config_get(c, "maxmemory") == str(mb * 1024 * 1024)
    assert redis_admin.config_get(c, "databases") == "1"
    assert redis_admin.config_get(c, "busy-reply-threshold") == "100"
    assert redis_admin.config_get(c, "proto-max-bulk-len") == str(16 * 1024 * 1024)


def test_healthcheck_reloads_kombu_scripts_after_redis_lost_them():
    """A restart or restore empties Redis' script cache; SCRIPT FLUSH is the same loss without downtime."""
    c = d.client()
    shas = list(lua.kombu_scripts())
    c.script_flush()
    assert c.script_exists(*shas) == [False] * len(shas)
    check = subprocess.run(["docker", "exec", d.container("redis"), "/usr/local/bin/redis-healthcheck"],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    assert c.script_exists(*shas) == [True] * len(shas)
    b_round_trip()


def test_issue_attacks_are_refused_and_b_is_unharmed():
    before = run_id()
    a = d.tenant_client("a", protocol=3)
    assert a.execute_command("HELLO", "3")[b"proto"] == 3
    loaded = d.client().script_load("return 'ran'")
    for command in (("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", B), ("SCRIPT", "LOAD", "return 1"),
                    ("EVALSHA", loaded, "0"), ("EVAL", "return 1", "0"), ("COPY", A + "x", A + "x", "DB", "9"),
                    ("CLIENT", "KILL", "USER", "tenant-b"), ("CLIENT", "PAUSE", "5000", "ALL"),
                    ("CLIENT", "NO-EVICT", "ON"), ("MONITOR",), ("SUBSCRIBE", "__keyspace@0__:" + B + "x"),
                    ("PUBSUB", "CHANNELS"), ("MEMORY", "USAGE", B + "x"), ("OBJECT", "ENCODING", B + "x"),
                    ("SCAN", "0"), ("INFO",), ("ACL", "WHOAMI"), ("FUNCTION", "LIST"),
                    ("SETRANGE", A + "big", str(500 * 1024 * 1024), "x"),
                    (d.redis_env()[acl.RENAMED["CONFIG"]], "SET", "maxmemory", "0")):
        with pytest.raises(redis.exceptions.NoPermissionError):
            a.execute_command(*command)
    assert hashlib.sha1(b"return 'ran'").hexdigest() == loaded
    b_round_trip()
    assert run_id() == before


# Opens N plain TCP connections to Redis from inside a tenant container and holds them until stdin closes.
FLOOD = """
import socket, sys
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
held, refused = [], 0
for _ in range(n):
    try:
        held.append(socket.create_connection((host, port), timeout=5))
    except OSError:
        refused += 1
print(len(held), refused, flush=True)
sys.stdin.read()
"""


def test_a_connection_flood_from_tenant_a_stops_at_its_own_cap_and_b_still_works():
    """Redis 7.0's maxclients is shared by every user; the per-tenant cap (ops/deploy/connlimit.py) keeps a's
    flood from using it up: a's new connections are reset once a holds REDIS_MAX_CONNECTIONS, b is unaffected."""
    tenants = ["a", "b"]
    assert connlimit.check(tenants) == []
    cap = connlimit.limit_of("a")
    before = run_id()
    flood = subprocess.Popen(["docker", "exec", "-i", d.container(naming.service_name("a", "worker")), "python",
                              "-c", FLOOD, naming.REDIS_SERVICE, str(naming.REDIS_TLS_PORT), str(cap + 50)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        held, refused = map(int, flood.stdout.readline().split())
        assert held <= cap and refused >= 50, (held, refused, cap)  # a's own services hold some of the cap too
        b_round_trip()  # b connects and works while a holds all it may
    finally:
        flood.communicate("", timeout=60)
    assert run_id() == before
    b_round_trip()
    after = d.post_echo("a", "after the flood")  # a's own services got their connections back
    assert d.wait_for_results("a", [after], timeout=120)[after]["result"]["tenant"] == "a"
