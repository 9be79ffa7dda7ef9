"""kombu's Redis transport with two repairs, so a worker survives an abrupt connection loss (kombu 5.7.0).

The race (kombu 5.7.0, Celery 5.7.0, redis-py 8.1.0; standalone reproduction: tests/app/kombu_connloss_repro.py):
when the server dies, the worker's consumer sees the error on one of its sockets (often the pub/sub one) and
calls `connection.collect()` (celery/worker/consumer/consumer.py, on_connection_error_after_connected).
collect() closes the default channel twice (maybe_close_channel, then close_connection), and kombu's
`Channel.close()` first reads the pending BRPOP reply (`_brpop_read`, when the channel was waiting for a
message), then deletes its auto-delete fanout bindings (the worker's pidbox queue): with a BRPOP pending, the
first close raises at the read and the second at the delete, collect() swallows both, and neither got as far
as restoring what the worker holds. collect() then clears the transport's client (`Connection._do_close_transport`:
`transport.client = None`). Celery next calls `connection.close()`, which closes the same channel again: this
time it gets through, disconnects its pools and restores the unacknowledged messages (QoS.restore_unacked),
which needs a new pool, whose parameters are read from `self.connection.client`: None.
`AttributeError: 'NoneType' object has no attribute 'hostname'` is not a connection error, Celery's
ignore_errors() lets it through and the worker exits with `Unrecoverable error`, its pool's tasks killed.
The same read fails with `'NoneType' object has no attribute 'client'` once a closed channel (whose
transport link close_channel() cleared) is used again, e.g. a late acknowledgement.

Repairs, both inside the channel, nothing else of kombu changed:
  1. A channel's connection parameters are computed once, while its transport is still attached (the
     channel pings the server in its constructor), and reused: a closed channel that needs a pool again
     (restore, late ack) gets one for the same server, so it succeeds when the server is back and fails
     with a redis ConnectionError (a connection error, which kombu and Celery handle) while it is not.
  2. What the closing channel could not put back because the server was down is put back by the next
     channel this process opens (right after its first successful PING, i.e. at the reconnect), with
     kombu's own restore_by_tag (one WATCH/MULTI per message; a message acknowledged meanwhile is left
     alone). Without it those messages wait for visibility_timeout (an hour by default) in the unacked
     index. At-least-once, as kombu's restore on close always was: a task still running when the server
     died runs again.

Registered for the `rediss` scheme through kombu's transport aliases (register(), called by celery_config),
so every connection the tenant's Celery app makes, a reconnect included, uses it.
"""
import logging
import threading

from kombu.transport import TRANSPORT_ALIASES, _transport_cache
from kombu.transport import redis as kombu_redis

logger = logging.getLogger(__name__)

SCHEME = "rediss"  # the only scheme the deployment's broker URL uses (tenantstack.connection.redis_url)


class _PutBack:
    """Delivery tags a closing channel could not restore (the server was down), put back at the next connect."""

    def __init__(self):
        self._lock = threading.Lock()  # a web's threads each open channels
        self._tags: dict[str, None] = {}  # ordered: put back in the order they were received

    def add(self, tags) -> None:
        with self._lock:
            self._tags.update(dict.fromkeys(tags))

    def take(self) -> list[str]:
        with self._lock:
            tags, self._tags = list(self._tags), {}
        return tags

    def __len__(self) -> int:
        return len(self._tags)


PUT_BACK = _PutBack()


class QoS(kombu_redis.QoS):
    def restore_unacked(self, client=None):
        # kombu's restore gives up at the first connection error (and marks the state restored): remember every
        # tag it held, so the next channel puts them back (restore_by_tag of a tag already restored is a no-op).
        held = list(self._delivered)
        try:
            return super().restore_unacked(client)
        except self.channel.connection_errors:
            PUT_BACK.add(held)
            logger.warning("tenantstack: the broker is unreachable: %d unacknowledged message(s) will be put back "
                           "at the reconnect", len(held))
            raise


class Channel(kombu_redis.Channel):
    QoS = QoS

    def __init__(self, *args, **kwargs):
        self._connparams_once = {}
        super().__init__(*args, **kwargs)  # pings the server: the asynchronous parameters are computed there
        self._connparams(asynchronous=False)  # the other set, while the transport is attached
        self._put_back_held()

    def _connparams(self, asynchronous=False):
        # Repair 1 (module docstring): never read the transport again after the first time.
        if asynchronous not in self._connparams_once:
            self._connparams_once[asynchronous] = super()._connparams(asynchronous=asynchronous)
        return dict(self._connparams_once[asynchronous])

    def _put_back_held(self):
        # Repair 2: the server answered this channel's PING; what a closed channel held goes back to its queue.
        tags = PUT_BACK.take()
        if not tags:
            return
        done = 0
        try:
            with self.conn_or_acquire() as client:
                for tag in tags:
                    self.qos.restore_by_tag(tag, client=client)
                    done += 1
        except self.connection_errors:
            # The server went away again: this channel is about to be collected, the next one tries the rest.
            PUT_BACK.add(tags[done:])
            return
        logger.warning("tenantstack: put back %d message(s) held when the broker connection was lost", len(tags))


class Transport(kombu_redis.Transport):
    Channel = Channel


def register() -> None:
    """Make kombu use this transport for rediss:// URLs (idempotent)."""
    TRANSPORT_ALIASES[SCHEME] = f"{__name__}:Transport"
    _transport_cache.pop(SCHEME, None)
