"""Reading kombu's messages as they sit in Redis: one owner for the app's metrics exporter and ./invoke status.

kombu's Redis transport stores (and publishes, for fanout exchanges) a JSON envelope:
`{"body": ..., "headers": {...}, "properties": {"body_encoding": "base64", ...}, ...}`. Task messages carry
naming.PUBLISHED_HEADER in `headers` (app/jobs/published.py); Celery's events (worker-heartbeat, ...) are a
JSON object in the base64 `body`. Both readers return None for anything else, never raise.
"""
import base64
import json

from .naming import PUBLISHED_HEADER


def published_at(raw: bytes | None) -> float | None:
    """The publish time a queued task message carries, or None (an empty queue, a message from before it)."""
    if not raw:
        return None
    try:
        value = json.loads(raw).get("headers", {}).get(PUBLISHED_HEADER)
        return float(value) if value is not None else None
    except (ValueError, TypeError, AttributeError):
        return None


def event_of(raw: bytes) -> dict | None:
    """A Celery event received through kombu's Redis fanout (PSUBSCRIBE): its decoded body."""
    try:
        envelope = json.loads(raw)
        body = envelope["body"]
        if envelope.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        event = json.loads(body)
        return event if isinstance(event, dict) else None
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


# The event types that mean "this worker is alive now", and the one that means it left.
ALIVE_EVENTS = ("worker-heartbeat", "worker-online")
GONE_EVENT = "worker-offline"
