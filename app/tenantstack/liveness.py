"""The worker's liveness file: touched every few seconds by the consumer after a PING to the broker.

`celery inspect ping` as a healthcheck costs about 0.8 CPU-seconds per run (a new Python with Celery, Django and
a TLS connection), every 30 s in every tenant: the biggest idle cost of the deployment. Instead the running
worker proves itself: a consumer bootstep, on the consumer's own event-loop timer, PINGs Redis as the tenant's
user over the consumer's pool and then touches `tenantstack.healthcheck.liveness_path(node)`; the healthcheck only
reads the file's age. A stale file means one of: the event loop is stuck (a stuck loop also stops consuming),
the consumer is not connected (the step stops with the connection and starts again after it), or Redis does not
answer the tenant. What it no longer proves is that control broadcasts reach the worker (`celery inspect` still
does that, on demand).
"""
import logging

from celery import bootsteps

from tenantstack.healthcheck import liveness_path

INTERVAL = 5.0  # seconds between PINGs; the healthcheck allows WORKER_MAX_AGE (several missed PINGs)
log = logging.getLogger(__name__)


class BrokerPing(bootsteps.StartStopStep):
    """Consumer step: started once the consumer is connected and consuming, stopped with its connection."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, c, **kwargs):
        self.tref = None
        self.path = liveness_path(c.hostname)
        super().__init__(c, **kwargs)

    def start(self, c):
        self.beat(c)
        self.tref = c.timer.call_repeatedly(INTERVAL, self.beat, (c,), priority=10)

    def stop(self, c):
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None
        self.path.unlink(missing_ok=True)  # a stopped consumer is not alive, whatever the file's age

    shutdown = stop

    def beat(self, c):
        try:
            with c.connection.default_channel.conn_or_acquire() as client:
                client.ping()
        except Exception as exc:  # noqa: BLE001 - a failed PING only leaves the file to go stale
            log.warning("liveness: broker PING failed: %s: %s", type(exc).__name__, exc)
            return
        self.path.touch()  # creates it, or sets its mtime to now
