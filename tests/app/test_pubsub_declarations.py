"""Broadcast() queues and event receivers on other routing keys work once declared, and only then.

Redis 7.0 compares a PSUBSCRIBE pattern literally with the ACL's channel patterns, so kombu's exact
patterns must be in the tenant's rule (deployment/naming.py acl_channel_patterns, from the env file's
CELERY_BROADCAST_QUEUES and CELERY_EVENT_ROUTING_KEYS). Undeclared, a worker consuming a Broadcast()
queue dies at start with NoPermissionError; declared, it gets the broadcast task. Declaring never opens
another tenant's channels.
"""
import socket
import sqlite3
import threading
import time

import pytest

import redis
from deployment import naming
from tests.app.processes import AppProcess, run, tenant_env, wait_for
from tests.app.tenant_apps import tenant_app, tenant_config
from tests.support import local_redis as _local_redis

# Every test here sends what the server must refuse: its ACL LOG entries are expected (tests/conftest.py).
pytestmark = pytest.mark.attacks

BROADCAST = "reload"
EVENT_KEY = "task.#"
DECLARED = {"CELERY_BROADCAST_QUEUES": BROADCAST, "CELERY_EVENT_ROUTING_KEYS": EVENT_KEY}


@pytest.fixture(scope="module")
def declared_redis(tmp_path_factory):
    """A server whose tenant a declared one Broadcast() queue and one event routing key (b declared nothing)."""
    server = _local_redis.start(tmp_path_factory.mktemp("redis-declared"), tenant_settings={"a": DECLARED})
    yield server
    server.stop()


def broadcast_worker(server, tmp_path, node: str) -> AppProcess:
    """The tenant's own app with CELERY_BROADCAST_QUEUES set, consuming what the entrypoint would have it consume."""
    env = tenant_env(server, "a", tmp_path, **DECLARED)
    assert run(["-m", "tenantstack.manage", "migrate", "--noinput"], env).returncode == 0
    shell = run(["-m", "tenantstack.env", "--shell"], env)
    queues = next(line.split("=", 1)[1] for line in shell.stdout.splitlines() if line.startswith("QUEUES="))
    assert queues == f"{naming.queue_name('a')},{BROADCAST}", shell.stdout
    return AppProcess(["-m", "celery", "-A", "tenantstack.celery", "worker", "--queues", queues, "--hostname",
                       node, "--concurrency", "1", "--loglevel", "INFO"], env, tmp_path / "worker.log", node=node)


def test_undeclared_broadcast_queue_kills_the_worker(local_redis, tmp_path):
    worker = broadcast_worker(local_redis, tmp_path, f"bcast-undeclared@{socket.gethostname()}")
    try:
        wait_for(lambda: "NoPermissionError" in worker.output() or "No permissions" in worker.output(), 60,
                 "the worker to be refused its Broadcast() subscription")
    finally:
        worker.stop()


def test_declared_broadcast_queue_gets_the_task(declared_redis, tmp_path):
    from kombu.common import Broadcast

    worker = broadcast_worker(declared_redis, tmp_path, f"bcast@{socket.gethostname()}")
    try:
        worker.wait_for_output("ready.", timeout=60)
        app = tenant_app(tenant_config(declared_redis, "a", tmp_path, **DECLARED))
        exchange = Broadcast(BROADCAST).exchange  # as Celery's docs route to a Broadcast() queue: by its exchange
        task_id = app.send_task("jobs.tasks.echo", args=["to every worker"], exchange=exchange,
                                routing_key=naming.queue_name("a"), declare=[exchange]).id

        def stored():
            with sqlite3.connect(tmp_path / "db.sqlite3", timeout=5) as db:
                row = db.execute("SELECT status FROM django_celery_results_taskresult WHERE task_id = ?",
                                 (task_id,)).fetchone()
            return row and row[0] == "SUCCESS"

        wait_for(stored, 30, "the broadcast task to run")
    finally:
        worker.stop()


def receive(server, tmp_path, routing_key: str, timeout: float = 4) -> list:
    """Tenant a's real event receiver on `routing_key` for `timeout` s: raises what kombu raised (e.g.
    NoPermissionError on its PSUBSCRIBE). Then the very pattern kombu subscribed to (read from its
    channel) is used to show tenant a's dispatcher's task events arrive on it."""
    app = tenant_app(tenant_config(server, "a", tmp_path, **DECLARED))
    failed, topics = [], []

    def listen():
        try:
            with app.connection_for_read() as conn:
                receiver = app.events.Receiver(conn, handlers={"*": lambda event: None}, routing_key=routing_key)
                channel = receiver.channel if hasattr(receiver, "channel") else conn.default_channel
                receiver.capture(limit=1, timeout=timeout, wakeup=False)
                topics.extend(channel._get_subscribe_topics(receiver.queue.name))
        except Exception as exc:  # noqa: BLE001 - re-raised in the test's thread
            failed.append(exc)

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    thread.join(timeout + 10)
    if failed and not isinstance(failed[0], socket.timeout):
        raise failed[0]
    pattern = naming.key_prefix("a") + (topics[0] if topics else f"/0.celeryev/{routing_key.replace('#', '*')}")
    p = server.tenant_client("a").pubsub()
    p.psubscribe(pattern)
    assert p.get_message(timeout=2)["type"] == "psubscribe"
    got = []
    with app.connection_for_write() as conn:
        dispatcher = app.events.Dispatcher(conn, enabled=True)
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            dispatcher.send("task-custom", note="hello")  # routing key task.custom
            message = p.get_message(timeout=0.5)
            if message and message["type"] == "pmessage":
                got.append(message)
    p.close()
    return got


def test_declared_event_routing_key_receives(declared_redis, tmp_path):
    got = receive(declared_redis, tmp_path, EVENT_KEY)
    assert got and got[0]["channel"] == naming.key_prefix("a").encode() + b"/0.celeryev/task.custom"


def test_undeclared_event_routing_key_is_refused(local_redis, tmp_path):
    with pytest.raises(redis.exceptions.NoPermissionError):
        receive(local_redis, tmp_path, EVENT_KEY)


def test_declarations_open_nothing_of_another_tenant(declared_redis):
    b = naming.key_prefix("b")
    a = declared_redis.tenant_client("a")
    for pattern in (f"{b}/0.{BROADCAST}", f"{b}/0.celeryev/task.*", f"{b}*"):
        p = a.pubsub()
        with pytest.raises(redis.exceptions.NoPermissionError):
            p.psubscribe(pattern)
            p.get_message(timeout=2)
        p.close()
    p = declared_redis.tenant_client("b").pubsub()  # b declared nothing: a's declaration is not b's
    with pytest.raises(redis.exceptions.NoPermissionError):
        p.psubscribe(f"{b}/0.{BROADCAST}")
        p.get_message(timeout=2)
    p.close()
