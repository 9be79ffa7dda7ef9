"""Standalone reproduction (upstream-ready): kombu's Redis channel crashes with AttributeError after a lost server.

kombu 5.7.0, Celery 5.7.0, redis-py 8.1.0, Redis 7.0 / Valkey 8.1. A Celery worker dies with
`Unrecoverable error: AttributeError("'NoneType' object has no attribute 'hostname'")` when its server is
killed while it holds an unacknowledged message AND waits in BRPOP for more (it has free prefetch room).
Celery's consumer does `connection.collect()` then `connection.close()` (consumer.py,
on_connection_error_after_connected); this script does the same, deterministically:

  1. consume one message without acknowledging it, then drain again with a timeout: a BRPOP stays pending
     (`channel._in_poll`);
  2. kill -9 the server;
  3. `conn.collect()`: Channel.close() calls `_brpop_read()`, which raises ConnectionError; collect()'s
     maybe_close_channel() swallows it, so the close stops before restoring the message; its
     close_connection() closes the channel again, which stops at deleting the auto-delete fanout binding
     (a worker's pidbox queue; _delete() forgets the queue before SREM raises); then
     `_do_close_transport()` sets `transport.client = None`;
  4. `conn.close()`: the same channel closes again, now all the way: `_disconnect_pools()`, then
     QoS.restore_unacked() -> conn_or_acquire() -> self.pool -> _get_pool() -> _connparams() ->
     `self.connection.client.hostname` -> AttributeError. It is no connection error: Celery's
     ignore_errors() does not catch it and the worker exits.

Run: python kombu_connloss_repro.py [redis-server command...]   (default: redis-server; needs kombu and redis)
It prints the traceback and exits 1 when the bug is there, exits 0 when close() survives.
"""
import contextlib
import socket
import subprocess
import sys
import time
import traceback

from kombu import Connection, Consumer, Exchange, Queue


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def reproduce(connection: Connection, kill, queue_name: str = "connloss-repro",
              fanout: str = "connloss-repro.fanout") -> BaseException | None:
    """Steps 1-4 on `connection` (a fresh kombu Connection to a live server); `kill()` kill -9s the server.

    Returns the exception `connection.close()` raised (None when it survived)."""
    queue = Queue(queue_name, Exchange(queue_name, type="direct"), routing_key=queue_name)
    # Like a Celery worker's broadcast (pidbox) queue: an auto-delete fanout queue on the same channel.
    broadcast = Queue(f"{queue_name}.{fanout}", Exchange(fanout, type="fanout"), auto_delete=True)
    held = []
    with connection.Producer() as producer:
        producer.publish({"n": 1}, exchange=queue.exchange, routing_key=queue_name, declare=[queue])
    channel = connection.default_channel
    consumer = Consumer(channel, [queue, broadcast], callbacks=[lambda body, message: held.append(message)],
                        accept=["json"])
    consumer.qos(prefetch_count=2)  # room for one more: the channel goes back to BRPOP
    consumer.consume()
    deadline = time.monotonic() + 10
    while not held:
        if time.monotonic() > deadline:
            raise RuntimeError("the message was never delivered")
        with contextlib.suppress(TimeoutError):
            connection.drain_events(timeout=1)
    with contextlib.suppress(TimeoutError):
        connection.drain_events(timeout=0.3)  # sends the next BRPOP and leaves it pending
    kill()
    with contextlib.suppress(Exception):  # Celery swallows whatever collect() raises, so does the reproduction
        connection.collect(socket_timeout=5)
    try:
        connection.close()
    except connection.connection_errors:
        return None  # what Celery's ignore_errors() catches: the worker reconnects
    except Exception as exc:  # noqa: BLE001 - the bug: anything else kills the worker
        return exc
    return None


def main(argv: list[str]) -> int:
    port = free_port()
    server = subprocess.Popen([*(argv or ["redis-server"]), "--port", str(port), "--save", "", "--appendonly", "no"],
                              stdout=subprocess.DEVNULL)
    try:
        connection = Connection(f"redis://127.0.0.1:{port}/0")
        deadline = time.monotonic() + 10
        while True:
            try:
                connection.ensure_connection(max_retries=1)
                break
            except Exception:  # noqa: BLE001 - the server is still starting
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

        def kill():
            server.kill()
            server.wait()

        exc = reproduce(connection, kill)
    finally:
        if server.poll() is None:
            server.kill()
    if exc is None:
        print("connection.close() survived the lost server: not reproduced")
        return 0
    traceback.print_exception(exc)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
