"""The server's ACL LOG, read for the suite's check that legitimate traffic is never refused (tests/conftest.py)."""
import redis


def take(connect) -> list[dict]:
    """Every entry of the ACL LOG, then clear it; [] when the server is not up (a fault test stopped it)."""
    try:
        client = connect()
        entries = client.acl_log(count=1000)
        client.acl_log_reset()
        return entries
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return []


def summary(entries: list[dict], most: int = 8) -> str:
    """One line: user, reason and object of each entry (who was refused what), the first few."""
    parts = [f"{e.get('username')} {e.get('reason')} {e.get('object')!r} x{e.get('count')}" for e in entries[:most]]
    return "; ".join(parts) + (f" (+{len(entries) - most} more)" if len(entries) > most else "")
