"""Tenant a's app is compromised: the attacker holds a's Redis password and client certificate and sends
whatever it likes. Every attack on tenant b, or on the shared Redis, is refused or harmless: after each
one tenant b's real task round trip still succeeds and Redis' run_id is unchanged.

The attacks are those of the issue (CLIENT TRACKING BCAST, SCRIPT LOAD + EVALSHA, COPY ... DB, limits)
plus what reading Redis 7.0's command table turns up (COMMAND DOCS, by category). All run on the fast
test server (the real redis.conf and ACL renderer); tests/containers/test_hostile_tenant.py repeats the
deployment-level claims on the real containers. Floods are bounded in size and time and clean up.
"""
import hashlib
import socket
import ssl
import time

import pytest

import redis
from deployment import acl, lua, naming
from tests.app.hostile import TenantB, assert_survived, refused

# Every test here sends what the server must refuse: its ACL LOG entries are expected (tests/conftest.py).
pytestmark = pytest.mark.attacks

A, B = naming.key_prefix("a"), naming.key_prefix("b")
B_SECRET = B + "hostile:secret"


@pytest.fixture(scope="module")
def tenant_b(local_redis, tmp_path_factory):
    b = TenantB(local_redis, tmp_path_factory.mktemp("hostile-b-data"),
                tmp_path_factory.mktemp("logs") / "worker-b.log", f"hostile-b@{socket.gethostname()}")
    yield b
    b.stop()


@pytest.fixture
def survives(local_redis, tenant_b):
    """Runs the test, then proves b unharmed and Redis the same process."""
    local_redis.client().set(B_SECRET, "b's secret", ex=300)
    run_id = local_redis.run_id()
    yield
    assert_survived(local_redis, tenant_b, run_id)
    assert local_redis.client().get(B_SECRET) == b"b's secret"


@pytest.fixture
def attacker(local_redis):
    """Tenant a's own credentials and certificate, RESP3 like redis-py 8 speaks it."""
    clients = []

    def open_client(**kw):
        c = local_redis.tenant_client("a", protocol=3, **kw)
        clients.append(c)
        return c

    yield open_client
    for c in clients:
        c.close()
    local_redis.client().delete(*[A + k for k in ("x", "y", "list", "big", "stream", "zs")])


ATTACKS = {
    # The issue: invalidation pushes naming b's keys. +@connection granted CLIENT TRACKING and Redis 7.0
    # never checks BCAST prefixes against the ACL; no CLIENT subcommand but SETNAME is granted now.
    "client": [("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", B), ("CLIENT", "TRACKING", "ON"),
               ("CLIENT", "CACHING", "YES"), ("CLIENT", "TRACKINGINFO"), ("CLIENT", "GETREDIR"),
               ("CLIENT", "KILL", "USER", "tenant-b"), ("CLIENT", "KILL", "TYPE", "normal"),
               ("CLIENT", "PAUSE", "5000", "ALL"), ("CLIENT", "UNPAUSE"), ("CLIENT", "NO-EVICT", "ON"),
               ("CLIENT", "LIST"), ("CLIENT", "INFO"), ("CLIENT", "ID"), ("CLIENT", "GETNAME"),
               ("CLIENT", "UNBLOCK", "1"), ("CLIENT", "REPLY", "OFF")],
    # Arbitrary Lua: a loop stalls everyone (BUSY), Lua memory is outside maxmemory. Only kombu's SHA1s run.
    "scripting": [("SCRIPT", "LOAD", "return 1"), ("SCRIPT", "FLUSH"), ("SCRIPT", "KILL"), ("SCRIPT", "DEBUG", "YES"),
                  ("EVAL", "return 1", "0"), ("EVAL_RO", "return 1", "0"),
                  ("EVALSHA", hashlib.sha1(b"return 'ran'").hexdigest(), "0"),
                  *[("EVALSHA_RO", sha, "1", A + "x") for sha in lua.kombu_scripts()],
                  ("FUNCTION", "LOAD", "#!lua name=evil\nredis.register_function('f', function() return 1 end)"),
                  ("FUNCTION", "LIST"), ("FUNCTION", "FLUSH"), ("FUNCTION", "DUMP"), ("FUNCTION", "STATS"),
                  ("FUNCTION", "KILL"), ("FCALL", "f", "0"), ("FCALL_RO", "f", "0")],
    # Other databases (and `databases 1` besides).
    "databases": [("COPY", A + "x", A + "x", "DB", "9"), ("COPY", A + "x", A + "y"), ("SELECT", "1"),
                  ("MOVE", A + "x", "1"), ("SWAPDB", "0", "1")],
    # Introspection of others' keys, and enumeration.
    "introspection": [("OBJECT", "ENCODING", B_SECRET), ("OBJECT", "FREQ", B_SECRET), ("OBJECT", "IDLETIME", B_SECRET),
                      ("MEMORY", "USAGE", B_SECRET), ("MEMORY", "STATS"), ("MEMORY", "DOCTOR"), ("MEMORY", "PURGE"),
                      ("SCAN", "0"), ("KEYS", "*"), ("RANDOMKEY",), ("DBSIZE",), ("TYPE", B_SECRET),
                      ("EXISTS", B_SECRET), ("TTL", B_SECRET), ("STRLEN", B_SECRET), ("DUMP", B_SECRET)],
    # Key patterns reaching other keys, other servers, serialized payloads, streams.
    "reach": [("SORT", A + "list", "BY", B + "*", "GET", B + "*"), ("SORT_RO", A + "list", "BY", B + "*"),
              ("MIGRATE", "127.0.0.1", "1", B_SECRET, "0", "100"), ("RESTORE", A + "y", "0", "x"),
              ("XREAD", "STREAMS", B + "stream", "0"), ("XADD", A + "stream", "*", "f", "v"),
              ("GET", B_SECRET), ("RPOP", B + "tenant-b"), ("ZRANGE", B + "unacked_index", "0", "-1"),
              ("BLMOVE", B + "tenant-b", A + "x", "RIGHT", "LEFT", "0.01"), ("SUNIONSTORE", A + "x", B + "*")],
    # Pub/sub: keyspace events, others' channels, patterns wider than a's, introspection.
    "pubsub": [("SUBSCRIBE", "__keyspace@0__:" + B_SECRET), ("PSUBSCRIBE", "__keyspace@*"), ("PSUBSCRIBE", "__key*"),
               ("PSUBSCRIBE", "*"), ("PSUBSCRIBE", B + "*"), ("PSUBSCRIBE", "tenant-a*"), ("PSUBSCRIBE", "tenant-?:*"),
               ("SUBSCRIBE", B + "/0.celery.pidbox"), ("SSUBSCRIBE", B + "x"), ("PUBLISH", B + "/0.celery.pidbox", "x"),
               ("SPUBLISH", A + "x", "x"), ("PUBSUB", "CHANNELS"), ("PUBSUB", "NUMSUB", B + "/0.celery.pidbox"),
               ("PUBSUB", "NUMPAT"), ("PUBSUB", "SHARDCHANNELS")],
    # Server state, replication, persistence, the operator's tools.
    "server": [("WAIT", "0", "1000"), ("MONITOR",), ("INFO",), ("INFO", "keyspace"), ("LATENCY", "LATEST"),
               ("LATENCY", "RESET"), ("LATENCY", "DOCTOR"), ("SLOWLOG", "GET"), ("SLOWLOG", "RESET"),
               ("CONFIG", "GET", "*"), ("CONFIG", "SET", "maxmemory", "0"), ("ACL", "WHOAMI"), ("ACL", "LIST"),
               ("ACL", "GETUSER", "tenant-b"), ("ACL", "LOG"), ("ACL", "USERS"),
               ("ACL", "SETUSER", "tenant-a", "+@all"),
               ("COMMAND",), ("COMMAND", "DOCS", "GET"), ("FLUSHALL",), ("FLUSHDB",), ("DEBUG", "SLEEP", "1"),
               ("SHUTDOWN", "NOSAVE"), ("SAVE",), ("BGSAVE",), ("BGREWRITEAOF",), ("LASTSAVE",),
               ("REPLICAOF", "127.0.0.1", "1"), ("FAILOVER",), ("MODULE", "LIST"), ("LOLWUT",)],
    # Big values: SETRANGE/APPEND are not granted (and proto-max-bulk-len is 16 MB, tested below).
    "growth": [("SETRANGE", A + "big", str(500 * 1024 * 1024), "x"), ("APPEND", A + "big", "x"),
               ("LSET", B + "tenant-b", "0", "x"), ("HINCRBY", B + "unacked", "x", "1")],
}


@pytest.mark.parametrize("category", sorted(ATTACKS))
def test_attack_is_refused(category, attacker, survives):
    a = attacker()
    a.rpush(A + "list", 1, 2)
    a.set(A + "x", "mine", ex=60)
    for command in ATTACKS[category]:
        refused(a, *command)
    assert a.get(A + "x") == b"mine"


def test_renamed_commands_are_refused_under_their_generated_names(local_redis, attacker, survives):
    a = attacker()
    for command, key in acl.RENAMED.items():
        args = {"CONFIG": ["GET", "maxmemory"], "KEYS": ["*"], "SHUTDOWN": ["NOSAVE"]}[command]
        with pytest.raises(redis.exceptions.NoPermissionError):
            a.execute_command(local_redis.redis_env[key], *args)


def test_tracking_delivers_no_invalidation_of_b_keys(local_redis, attacker, survives):
    """The issue's attack as sent: HELLO 3, CLIENT TRACKING ON BCAST PREFIX tenant-b:, then b writes."""
    a = attacker(single_connection_client=True)
    assert a.execute_command("HELLO", "3")[b"proto"] == 3
    refused(a, "CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", B)
    local_redis.client().set(B_SECRET, "b's secret", ex=300)  # would push an invalidation naming the key
    conn = a.connection
    assert not conn.can_read(timeout=0.5), "tenant a's connection received something it did not ask for"


def test_only_kombu_scripts_run_even_when_some_other_script_is_cached(local_redis, attacker, survives):
    """An operator (or anyone) having loaded a script gives tenants no way to run it; kombu's do run."""
    loop = local_redis.client().script_load("return 'ran'")  # a stand-in for `while true do end`, safely bounded
    a = attacker()
    refused(a, "EVALSHA", loop, "0")
    refresh, _sweep, release = lua.kombu_scripts()
    assert a.evalsha(refresh, 2, A + "x", A + "zs", "m", "ex", "60000") is None
    assert a.evalsha(release, 1, A + "lock", "token") == 0  # redis-py's Lock release: not held, nothing done
    a.delete(A + "x", A + "zs")


def test_kombu_sweep_script_cannot_delete_b_keys(local_redis, attacker, survives):
    _refresh, sweep, _release = lua.kombu_scripts()
    a = attacker()
    a.zadd(A + "zs", {"hostile:secret": 0})
    with pytest.raises(redis.ResponseError, match="(?i)no permissions|can't access"):
        a.evalsha(sweep, 1, A + "zs", B, B + "nothing:", "10")
    assert local_redis.client().get(B_SECRET) == b"b's secret"


def test_psubscribe_on_its_own_prefix_hears_only_its_own_channels(local_redis, attacker, survives):
    """`tenant-a:*` is a's own literal ACL pattern: allowed, and it matches nothing of b's."""
    p = attacker().pubsub()
    p.psubscribe(A + "*")
    assert p.get_message(timeout=2)["type"] == "psubscribe"
    # b publishes first: were its message delivered, it would arrive before a's own.
    local_redis.tenant_client("b").publish(B + "/0.celery.pidbox", "b's broadcast")
    local_redis.tenant_client("a").publish(A + "/0.celery.pidbox", "a's own")
    seen, deadline = [], time.monotonic() + 10
    while b"a's own" not in [m["data"] for m in seen] and time.monotonic() < deadline:
        message = p.get_message(timeout=1)
        if message and message["type"] == "pmessage":
            seen.append(message)  # tenant a's own worker may publish on a's channels meanwhile: fine
    p.close()
    assert b"a's own" in [m["data"] for m in seen]
    assert not [m for m in seen if m["channel"].startswith(B.encode()) or m["data"] == b"b's broadcast"]


def test_wrong_user_or_password_is_refused_and_leaves_a_as_it_was(local_redis, attacker, survives):
    a = attacker(single_connection_client=True)
    for command in (("AUTH", "tenant-b", "guess"), ("HELLO", "3", "AUTH", "tenant-b", "guess"),
                    ("AUTH", "default", local_redis.tenant_passwords["a"])):
        with pytest.raises(redis.AuthenticationError):
            a.execute_command(*command)
    refused(a, "GET", B_SECRET)  # still tenant a, no more


def test_reset_gains_nothing(local_redis, attacker, survives):
    """RESET is a no-auth command, which Redis 7.0 runs whatever the ACL says; the connection is left
    with at most tenant a's rights (seen: still tenant a), so b's keys and CLIENT TRACKING stay refused."""
    a = attacker(single_connection_client=True)
    assert a.execute_command("RESET") == b"RESET"
    for command in (("GET", B_SECRET), ("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", B), ("KEYS", "*")):
        with pytest.raises((redis.exceptions.NoPermissionError, redis.AuthenticationError, redis.ResponseError)):
            a.execute_command(*command)


def test_quit_only_closes_a_own_connection(attacker, survives):
    a = attacker(single_connection_client=True)
    a.execute_command("QUIT")
    assert a.ping()  # redis-py reconnects; nothing else changed


def test_value_beyond_proto_max_bulk_len_is_refused(local_redis, attacker, survives):
    """16 MB per string (redis.conf), not the default 512 MB; the server drops the connection."""
    a = attacker(single_connection_client=True, retry_on_error=[])
    with pytest.raises((redis.ConnectionError, redis.ResponseError)):
        a.set(A + "big", b"x" * (17 * 1024 * 1024))
    assert local_redis.client().exists(A + "big") == 0


def _tls_socket(local_redis, user: str, password: str) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=str(local_redis.ca))
    ctx.load_cert_chain(*map(str, local_redis.cert(user)))
    raw = socket.create_connection((local_redis.host, local_redis.port), timeout=5)
    s = ctx.wrap_socket(raw, server_hostname="localhost")
    s.sendall(f"AUTH {user} {password}\r\n".encode())
    assert s.recv(5) == b"+OK\r\n"
    return s


def test_a_client_that_never_reads_is_cut_at_the_output_buffer_limit(local_redis, attacker, survives):
    """64 MB of unread replies (client-output-buffer-limit normal): the server closes that connection."""
    a = attacker()
    a.set(A + "big", b"x" * (4 * 1024 * 1024), ex=60)
    s = _tls_socket(local_redis, "tenant-a", local_redis.tenant_passwords["a"])
    s.sendall(f"GET {A}big\r\n".encode() * 40)  # 160 MB of replies asked for, none read
    deadline, closed = time.monotonic() + 20, False
    while not closed and time.monotonic() < deadline:
        time.sleep(0.5)
        closed = not any(c["user"] == "tenant-a" and c["cmd"] == "get" for c in local_redis.client().client_list())
    s.close()
    assert closed, "the non-reading client is still connected"


def test_many_connections_do_not_lock_b_out(local_redis, tenant_b, survives):
    """Bounded: 200 of a's connections at once, b's round trip while they are open (maxclients, which
    Redis 7.0 cannot split per user, is 1000 for everyone: see README)."""
    opened = []
    try:
        for _ in range(200):
            opened.append(_tls_socket(local_redis, "tenant-a", local_redis.tenant_passwords["a"]))
        tenant_b.round_trip()
    finally:
        for s in opened:
            s.close()


def config(local_redis, name: str) -> str:
    reply = local_redis.client().execute_command(local_redis.redis_env[acl.RENAMED["CONFIG"]], "GET", name)
    pairs = reply if isinstance(reply, dict) else dict(zip(reply[::2], reply[1::2], strict=True))
    return pairs[name.encode()].decode()


@pytest.mark.parametrize("name,value", [
    ("databases", "1"), ("maxmemory", str(1024 * 1024 * 1024)), ("maxmemory-policy", "noeviction"),
    ("busy-reply-threshold", "100"), ("lua-time-limit", "100"), ("proto-max-bulk-len", str(16 * 1024 * 1024)),
    ("client-query-buffer-limit", str(32 * 1024 * 1024)), ("timeout", "300"), ("maxclients", "1000"),
    ("maxmemory-clients", "10%"),
])
def test_server_bounds(local_redis, name, value):
    assert config(local_redis, name) == value


# What Redis 7.0 cannot limit (README, Redis): these tests show the limitation is real, so the README
# never claims more than Redis gives.

def test_limitation_a_certificate_is_not_bound_to_its_user(local_redis):
    """Redis checks the certificate's CA, not its CN: a's certificate with b's password logs in as b."""
    crossed = local_redis.client(naming.redis_user("b"), local_redis.tenant_passwords["b"], cert=naming.redis_user("a"))
    local_redis.client().set(B_SECRET, "b's secret", ex=60)
    assert crossed.get(B_SECRET) == b"b's secret"  # logged in as b, with a's certificate
    with pytest.raises(redis.exceptions.NoPermissionError):
        crossed.get(A + "x")  # and only as b


def test_limitation_maxclients_is_shared_by_every_user(local_redis, tenant_b):
    """One count for all users: tenant a can take every slot and lock b out (lowered to 40 here)."""
    cfg = local_redis.redis_env[acl.RENAMED["CONFIG"]]
    op = local_redis.client(single_connection_client=True)
    before = config(local_redis, "maxclients")
    opened = []
    try:
        op.execute_command(cfg, "SET", "maxclients", "40")
        for _ in range(60):
            try:
                s = _tls_socket(local_redis, "tenant-a", local_redis.tenant_passwords["a"])
            except (AssertionError, OSError):
                break
            opened.append(s)
        with pytest.raises(redis.ConnectionError):  # over TLS Redis just drops the new connection
            local_redis.tenant_client("b", retry_on_error=[]).ping()
    finally:
        for s in opened:
            s.close()
        op.execute_command(cfg, "SET", "maxclients", before)
    tenant_b.round_trip()
