"""Real checks of what the tenant depends on: each returns "ok" or a short "error: ..." string."""
from django.db import connection

from tenantstack.celery import app  # the project's app, configured by the glue

BROKER_TIMEOUT_SECONDS = 2.0
MAX_ERROR_LENGTH = 200


def short_error(exc: BaseException) -> str:
    """`error: <Type>: <first line>`, cut short; redis and kombu messages never hold the password."""
    text = (str(exc).strip().splitlines() or [""])[0]
    return f"error: {type(exc).__name__}: {text}"[:MAX_ERROR_LENGTH] if text else f"error: {type(exc).__name__}"


def database_status() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        return "ok"
    except Exception as exc:  # noqa: BLE001 - any failure is reported, never raised
        return short_error(exc)


def broker_status(timeout: float = BROKER_TIMEOUT_SECONDS) -> str:
    """A PING over a fresh TLS connection, authenticated as the tenant's Redis user, within `timeout`."""
    options = {"socket_connect_timeout": timeout, "socket_timeout": timeout}
    try:
        with app.connection_for_write(transport_options=options) as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout)
            channel = conn.channel()
            try:
                channel.client.ping()
            finally:
                channel.close()
        return "ok"
    except Exception as exc:  # noqa: BLE001 - any failure is reported, never raised
        return short_error(exc)
