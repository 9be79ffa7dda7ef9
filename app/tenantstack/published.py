"""Every task message carries the time it was published, so the metrics can tell how old the oldest queued one is.

A `before_task_publish` handler adds one header, naming.PUBLISHED_HEADER (seconds since the epoch, float), to every
message this process sends (web, beat, and tasks sent by tasks). kombu LPUSHes a message onto the queue's
list and workers BRPOP from its right end, so LINDEX <queue> -1 is the oldest waiting message:
jobs/metrics.py reads that one message's header, nothing else. The cost on the hot path is one time.time()
and one dict entry per publish (about 20 bytes more per message); nothing is sent or stored besides.
Connected by importing this module (tenantstack/celery.py does, once).
"""
import time

from celery.signals import before_task_publish

from deployment.naming import PUBLISHED_HEADER


@before_task_publish.connect(weak=False)
def stamp_publish_time(sender=None, headers=None, **kwargs):
    """Celery passes the message's own headers dict: what is set here is published with the message.

    A retry is a new publish and gets a new time: the age measured is how long a message has waited."""
    if headers is not None:
        headers[PUBLISHED_HEADER] = time.time()
