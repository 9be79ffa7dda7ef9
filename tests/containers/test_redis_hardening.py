"""The deployed Redis refuses everything it should and allows what tenants and operators need."""
import socket
import ssl
import subprocess
import time

import pytest

import redis
from deployment import naming
from ops.config.paths import INSTANCE, REDIS_SECRETS, TLS
from ops.secrets import tls
from tests.support import deployment as d

pytestmark = [pytest.mark.usefixtures("redis_up"), pytest.mark.attacks]
PORT = INSTANCE.redis_port  # the test instance's host port


def test_plain_tcp_is_refused():
    with socket.create_connection(("127.0.0.1", PORT), timeout=5) as s:
        s.sendall(b"PING\r\n")
        s.settimeout(5)
        try:
            reply = s.recv(100)
        except (TimeoutError, ConnectionResetError):
            reply = b""
    assert b"PONG" not in reply
    with pytest.raises(redis.ConnectionError):
        redis.Redis(port=PORT, socket_timeout=5, password=d.redis_env()["REDIS_PASSWORD"]).ping()


def test_tls_without_client_certificate_is_refused():
    with pytest.raises(redis.ConnectionError):
        d.client(cert=None).ping()


def test_tls_with_certificate_from_another_ca_is_refused(tmp_path):
    tls.make_ca(tmp_path / "ca.crt", tmp_path / "ca.key", cn="some other CA")
    tls.make_leaf(tmp_path / "ca.crt", tmp_path / "ca.key", tmp_path / "x.crt", tmp_path / "x.key", "client")
    c = redis.Redis(port=PORT, ssl=True, ssl_ca_certs=str(TLS / "ca.crt"), ssl_cert_reqs="required",
                    ssl_certfile=str(tmp_path / "x.crt"), ssl_keyfile=str(tmp_path / "x.key"),
                    password=d.redis_env()["REDIS_PASSWORD"], socket_timeout=5)
    with pytest.raises(redis.ConnectionError):
        c.ping()


def test_tls_below_1_2_is_refused():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(TLS / "ca.crt")
    ctx.load_cert_chain(TLS / "client.crt", TLS / "client.key")
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    with pytest.warns(DeprecationWarning):
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        ctx.minimum_version = ssl.TLSVersion.TLSv1
    with socket.create_connection(("127.0.0.1", PORT), timeout=5) as raw, \
            pytest.raises((ssl.SSLError, ConnectionResetError)):
        ctx.wrap_socket(raw, server_hostname="localhost").do_handshake()


def test_no_password_is_refused():
    with pytest.raises(redis.AuthenticationError):
        d.client(password=None, user=None, cert="client").execute_command("AUTH", "")
    c = redis.Redis(port=PORT, ssl=True, ssl_ca_certs=str(TLS / "ca.crt"), ssl_cert_reqs="required",
                    ssl_certfile=str(TLS / "client.crt"), ssl_keyfile=str(TLS / "client.key"))
    with pytest.raises(redis.AuthenticationError):  # NOAUTH
        c.get("anything")


@pytest.mark.parametrize("user", [None, "tenant-a"])
def test_wrong_password_is_refused(user):
    with pytest.raises(redis.AuthenticationError):
        d.client(user=user, password="not-the-password").ping()


def test_tenant_a_works_on_its_own_keys():
    a = d.tenant_client("a")
    key = naming.key_prefix("a") + "test:own"
    a.set(key, "v", ex=60)
    assert a.get(key) == b"v"
    a.rpush(key + ":list", 1, 2)  # with what kombu uses on its queues (LRANGE is not in the allow-list)
    assert a.llen(key + ":list") == 2 and a.rpop(key + ":list") == b"2"
    assert a.delete(key, key + ":list") == 2


@pytest.mark.parametrize("op", ["get", "set", "delete", "lpush", "rename_into", "copy_into"])
def test_tenant_a_cannot_touch_tenant_b_keys(op):
    b_key = naming.key_prefix("b") + "test:secret"
    d.client().set(b_key, "b-data", ex=60)
    a = d.tenant_client("a")
    own = naming.key_prefix("a") + "test:src"
    a.set(own, "x", ex=60)
    call = {"get": lambda: a.get(b_key), "set": lambda: a.set(b_key, "a-was-here"), "delete": lambda: a.delete(b_key),
            "lpush": lambda: a.lpush(b_key + ":q", "evil"), "rename_into": lambda: a.rename(own, b_key),
            "copy_into": lambda: a.copy(own, b_key, replace=True)}[op]
    with pytest.raises(redis.exceptions.NoPermissionError):
        call()
    assert d.client().get(b_key) == b"b-data"


def test_tenant_a_cannot_publish_to_or_subscribe_on_tenant_b_channels():
    a = d.tenant_client("a")
    b_channel = naming.key_prefix("b") + "/0.celery.pidbox"
    with pytest.raises(redis.exceptions.NoPermissionError):
        a.publish(b_channel, "shutdown")
    for method, arg in (("psubscribe", b_channel), ("psubscribe", "*"), ("subscribe", b_channel),
                        ("psubscribe", naming.key_prefix("b") + "*")):
        p = a.pubsub()
        with pytest.raises(redis.exceptions.NoPermissionError):
            getattr(p, method)(arg)
            p.get_message(timeout=2)
        p.close()


def test_tenant_a_may_psubscribe_on_the_patterns_kombu_uses():
    a = d.tenant_client("a")
    p = a.pubsub()
    for pattern in naming.acl_channel_patterns("a"):
        p.psubscribe(pattern)
    deadline = time.monotonic() + 5
    confirmed = 0
    while confirmed < len(naming.acl_channel_patterns("a")) and time.monotonic() < deadline:
        m = p.get_message(timeout=1)
        confirmed += bool(m and m["type"] == "psubscribe")
    p.close()
    assert confirmed == len(naming.acl_channel_patterns("a"))


@pytest.mark.parametrize("command", [
    ["SCAN", "0"], ["KEYS", "*"], ["FLUSHALL"], ["FLUSHDB"], ["CONFIG", "GET", "*"], ["DEBUG", "SLEEP", "0"],
    ["SHUTDOWN", "NOSAVE"], ["ACL", "LIST"], ["ACL", "WHOAMI"], ["RANDOMKEY"], ["DBSIZE"], ["PUBSUB", "CHANNELS"],
    ["INFO"], ["MONITOR"], ["SELECT", "1"], ["CLIENT", "LIST"], ["SWAPDB", "0", "1"],
])
def test_tenant_user_is_refused_admin_and_enumeration_commands(command):
    a = d.tenant_client("a")
    with pytest.raises(redis.ResponseError):
        a.execute_command(*command)
    assert a.ping()  # still connected: refused, not crashed


@pytest.mark.parametrize("command", ["CONFIG", "KEYS", "SHUTDOWN"])
def test_tenant_user_is_refused_renamed_commands_under_their_new_names(command):
    from deployment.acl import RENAMED

    renamed = d.redis_env()[RENAMED[command]]
    with pytest.raises(redis.exceptions.NoPermissionError):
        args = {"CONFIG": ["GET", "maxmemory"], "KEYS": ["*"], "SHUTDOWN": ["NOSAVE"]}[command]
        d.tenant_client("a").execute_command(renamed, *args)


@pytest.mark.parametrize("command", ["FLUSHALL", "FLUSHDB", "DEBUG", "CONFIG", "KEYS", "SHUTDOWN"])
def test_operator_cannot_use_disabled_or_original_names(command):
    with pytest.raises(redis.ResponseError, match="unknown command"):
        d.client().execute_command(command, *(["GET", "x"] if command == "CONFIG" else []))


def test_operator_runs_renamed_config_get():
    from ops.deploy import redis_admin

    c = d.client()
    assert redis_admin.config_get(c, "appendonly") == "yes"
    assert redis_admin.config_get(c, "appendfsync") == "everysec"
    assert redis_admin.config_get(c, "maxmemory-policy") == "noeviction"
    assert redis_admin.config_get(c, "save") == "900 1 300 10 60 10000"
    assert redis_admin.config_get(c, "port") == "0"
    assert redis_admin.config_get(c, "tls-auth-clients") == "yes"


def test_aof_and_rdb_files_appear_on_the_volume_after_writes():
    c = d.client()
    for i in range(100):
        c.set(f"ops:test:persist:{i}", i, ex=300)
    before = c.lastsave()
    c.bgsave()
    deadline = time.monotonic() + 30
    while c.lastsave() == before and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.2)  # appendfsync everysec
    listing = subprocess.run(["docker", "exec", d.container("redis"), "sh", "-c",
                              "stat -c '%n %s' /data/dump.rdb /data/appendonlydir/*"], capture_output=True, text=True)
    assert listing.returncode == 0, listing.stderr
    sizes = dict(line.rsplit(" ", 1) for line in listing.stdout.splitlines())
    assert int(sizes["/data/dump.rdb"]) > 0
    assert any(name.endswith(".incr.aof") and int(size) > 0 for name, size in sizes.items())
    assert "/data/appendonlydir/appendonly.aof.manifest" in sizes
    c.delete(*[f"ops:test:persist:{i}" for i in range(100)])


def test_published_on_loopback_only():
    ports = d.inspect(d.container("redis"))["HostConfig"]["PortBindings"]
    assert ports == {f"{naming.REDIS_TLS_PORT}/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(PORT)}]}
    for addr in {a[4][0] for a in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)} - {"127.0.0.1"}:
        with pytest.raises(OSError):
            socket.create_connection((addr, PORT), timeout=2).close()


def test_container_runs_hardened():
    info = d.inspect(d.container("redis"))
    host = info["HostConfig"]
    assert info["Config"]["User"] == "999"
    assert subprocess.run(["docker", "exec", d.container("redis"), "id", "-u"], capture_output=True,
                          text=True).stdout.strip() == "999"
    assert any("no-new-privileges" in o for o in host["SecurityOpt"])
    assert host["ReadonlyRootfs"] is True
    assert {c.upper().removeprefix("CAP_") for c in host["CapDrop"]} >= {"ALL"} or not host.get("CapAdd")
    caps = subprocess.run(["docker", "exec", d.container("redis"), "grep", "CapEff", "/proc/1/status"],
                          capture_output=True, text=True).stdout
    assert caps.split()[-1] == "0000000000000000"
    conf = [m for m in info["Mounts"] if m["Destination"] == "/etc/redis/redis.conf"]
    assert conf and conf[0]["RW"] is False
    volume = [m for m in info["Mounts"] if m["Destination"] == "/data"]
    assert volume and volume[0]["Type"] == "volume"


def test_healthcheck_is_an_authenticated_tls_ping():
    info = d.inspect(d.container("redis"))
    assert info["State"]["Health"]["Status"] == "healthy"
    script = subprocess.run(["docker", "exec", d.container("redis"), "cat", "/usr/local/bin/redis-healthcheck"],
                            capture_output=True, text=True).stdout
    assert "--tls" in script and "--user health" in script
    # The health user may PING and nothing else.
    health = d.client(user="health", password=subprocess.run(
        ["cat", str(REDIS_SECRETS / "health.pass")], capture_output=True, text=True).stdout.strip())
    assert health.ping()
    with pytest.raises(redis.exceptions.NoPermissionError):
        health.get("anything")
