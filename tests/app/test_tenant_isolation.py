"""Tenant a's broker credentials cannot read or touch tenant b's queue, keys or channels (Redis ACL)."""
import pytest

import redis
from deployment import naming
from tests.app.tenant_apps import tenant_app, tenant_config

# Every test here sends what the server must refuse: its ACL LOG entries are expected (tests/conftest.py).
pytestmark = pytest.mark.attacks


@pytest.fixture
def raw_client_of():
    """A raw (unprefixed) redis client over the tenant app's own broker connection: what a buggy or
    hostile tenant could send with its credentials."""
    opened = []

    def open_for(app) -> redis.Redis:
        conn = app.connection_for_write()
        opened.append(conn)
        return redis.Redis(connection_pool=conn.default_channel.client.connection_pool)

    yield open_for
    for conn in opened:
        conn.release()


def test_tenant_a_cannot_read_tenant_b_queue(local_redis, tmp_path, raw_client_of):
    app_a = tenant_app(tenant_config(local_redis, "a", tmp_path))
    app_b = tenant_app(tenant_config(local_redis, "b", tmp_path))
    b_queue_key = naming.key_prefix("b") + naming.queue_name("b")
    raw_b = raw_client_of(app_b)
    before = raw_b.llen(b_queue_key)
    app_b.send_task("jobs.tasks.echo", args=["for tenant b only"], expires=60)
    assert raw_b.llen(b_queue_key) == before + 1, "tenant b's message is not where the test expects it"

    raw_a = raw_client_of(app_a)
    reads = [
        lambda: raw_a.llen(b_queue_key),
        lambda: raw_a.lrange(b_queue_key, 0, -1),
        lambda: raw_a.rpop(b_queue_key),
        lambda: raw_a.brpop([b_queue_key], timeout=1),
        lambda: raw_a.lmove(b_queue_key, naming.key_prefix("a") + "stolen", "RIGHT", "LEFT"),
        lambda: raw_a.hgetall(naming.key_prefix("b") + "unacked"),
        lambda: raw_a.smembers(naming.key_prefix("b") + "_kombu.binding." + naming.queue_name("b")),
        lambda: raw_a.delete(b_queue_key),
        lambda: raw_a.scan(0),
        lambda: raw_a.publish(naming.key_prefix("b") + "/0.celery.pidbox", "x"),
    ]
    for attempt in reads:
        with pytest.raises(redis.exceptions.NoPermissionError):
            attempt()
    assert raw_b.llen(b_queue_key) == before + 1  # untouched
    assert raw_b.rpop(b_queue_key)  # tidy up: tenant b takes its own message back
    assert raw_a.llen(naming.key_prefix("a") + naming.queue_name("a")) >= 0  # its own queue stays readable


def test_tenant_a_cannot_subscribe_to_tenant_b_channels(local_redis, tmp_path, raw_client_of):
    raw_a = raw_client_of(tenant_app(tenant_config(local_redis, "a", tmp_path)))
    pubsub = raw_a.pubsub()
    try:
        with pytest.raises(redis.exceptions.NoPermissionError):
            pubsub.psubscribe(naming.key_prefix("b") + "/0.celery.pidbox")
            pubsub.get_message(timeout=2)
    finally:
        pubsub.close()


def test_a_tenant_script_cannot_reach_another_tenant_keys(local_redis, tmp_path, raw_client_of):
    """kombu runs Lua (EVALSHA) for expiring queues; a tenant may run only kombu's scripts, and Redis
    still applies the ACL inside them, to declared keys and to keys a script builds from its arguments."""
    from kombu.transport import redis as transport

    raw_a = raw_client_of(tenant_app(tenant_config(local_redis, "a", tmp_path)))
    a, b = naming.key_prefix("a"), naming.key_prefix("b")
    refresh, sweep = raw_a.register_script(transport.REFRESH_BINDING), raw_a.register_script(transport.SWEEP_BINDINGS)
    assert refresh(keys=[a + "bindings", a + "deadlines"], args=["m", "x", 60000]) is None  # its own keys: fine
    with pytest.raises(redis.exceptions.NoPermissionError):  # a declared key of b's
        refresh(keys=[b + "_kombu.binding.x", a + "deadlines"], args=["m", "x", 60000])
    local_redis.client().set(b + "_kombu.binding.x", "b's", ex=60)
    raw_a.zadd(a + "deadlines", {"x": 0})
    with pytest.raises(redis.exceptions.ResponseError, match="(?i)no permissions|can't access"):
        sweep(keys=[a + "deadlines"], args=[b + "_kombu.binding.", b + "_kombu.binding_permanent.", 10])
    assert local_redis.client().get(b + "_kombu.binding.x") == b"b's"
    # Lambdas on purpose: each attempt must run inside pytest.raises below, not while building the tuple.
    for arbitrary in (lambda: raw_a.register_script(f"return redis.call('LLEN', '{b}q')")(),  # noqa: PLW0108
                      lambda: raw_a.eval("return 1", 0)):
        with pytest.raises(redis.exceptions.NoPermissionError):
            arbitrary()
    raw_a.delete(a + "bindings", a + "deadlines")
