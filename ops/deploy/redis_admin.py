"""Operator connections to the instance's Redis from the host (127.0.0.1, its Redis port, TLS, default user)."""
import redis
from ops.config.envfile import redis_settings
from ops.config.paths import INSTANCE, TLS
from ops.core.errors import OpsError

HOST = "127.0.0.1"


def operator(timeout: float = 10, **kw) -> redis.Redis:
    settings = redis_settings()
    return redis.Redis(host=HOST, port=INSTANCE.redis_port, password=settings["REDIS_PASSWORD"], ssl=True,
                       ssl_ca_certs=str(TLS / "ca.crt"), ssl_certfile=str(TLS / "client.crt"),
                       ssl_keyfile=str(TLS / "client.key"), ssl_cert_reqs="required",
                       socket_timeout=timeout, socket_connect_timeout=5, **kw)


def renamed(command: str) -> str:
    """The generated name of a renamed command (CONFIG, KEYS, SHUTDOWN)."""
    from deployment.acl import RENAMED

    return redis_settings()[RENAMED[command]]


def config_get(client: redis.Redis, name: str) -> str:
    reply = client.execute_command(renamed("CONFIG"), "GET", name)
    if not reply:
        raise OpsError(f"Redis has no setting {name!r}")
    # A RESP3 map, or a RESP2 flat list of name, value pairs.
    pairs = reply if isinstance(reply, dict) else dict(zip(reply[::2], reply[1::2], strict=True))
    value = next(iter(pairs.values()))
    return value.decode() if isinstance(value, bytes) else value


def config_set(client: redis.Redis, name: str, value) -> None:
    client.execute_command(renamed("CONFIG"), "SET", name, value)


def unlink_matching(client: redis.Redis, pattern: str, batch: int = 10_000) -> int:
    """SCAN for keys matching pattern and UNLINK them in batches (never KEYS, never FLUSHDB); returns the count."""
    removed, keys = 0, []
    for key in client.scan_iter(match=pattern, count=batch):
        keys.append(key)
        if len(keys) >= batch:
            removed += client.unlink(*keys)
            keys = []
    return removed + (client.unlink(*keys) if keys else 0)


def ping_or_explain(client: redis.Redis) -> None:
    try:
        client.ping()
    except redis.AuthenticationError:
        raise OpsError("Redis refused the operator password: envs/redis.env and the running Redis disagree; "
                       "run `./invoke up` to apply envs/redis.env") from None
    except (redis.ConnectionError, OSError) as exc:
        raise OpsError(f"Redis does not answer on {HOST}:{INSTANCE.redis_port} ({exc}): "
                       "start it with `./invoke up`") from None
