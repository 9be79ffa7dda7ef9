"""The `tools` profile: redis-commander's settings file and its login.

secrets/commander/settings.json is derived from envs/redis.env on every `./invoke init` and `./invoke up`
(like secrets/redis/auth.conf) and mounted read-only into the container, where
tools/redis-commander/config/production.js reads it. Passwords therefore never appear in the
container's environment or command line (`docker inspect`).
"""
import json
import os

from tenantstack import naming

from . import compose
from .envfile import write_private
from .errors import OpsError
from .paths import COMMANDER_SETTINGS

SERVICE = "redis-commander"
REDIS_HOST = "redis"  # the Compose service name; also in the server certificate's SANs (ops/tls.py)
REDIS_USER = "commander"  # the read-only ACL user ops/secrets.py renders into secrets/redis/auth.conf


def render_settings(redis_env: dict[str, str]) -> str:
    settings = {
        "redis": {"host": REDIS_HOST, "port": naming.REDIS_TLS_PORT, "db": naming.BROKER_DB,
                  "username": REDIS_USER, "password": redis_env["REDIS_COMMANDER_PASSWORD"]},
        "httpAuth": {"username": redis_env["COMMANDER_HTTP_USER"], "password": redis_env["COMMANDER_HTTP_PASSWORD"]},
    }
    return json.dumps(settings, indent=2) + "\n"


def write_settings(redis_env: dict[str, str], uid: int) -> None:
    """Write secrets/commander/settings.json, readable by the container user `uid` only."""
    write_private(COMMANDER_SETTINGS, render_settings(redis_env), mode=0o400)
    os.chown(COMMANDER_SETTINGS, uid, uid)


def url() -> str:
    """The UI's address on this host, from the service's published port in compose.yaml (its one place)."""
    ports = compose.definition()["services"][SERVICE].get("ports") or []
    try:
        host, port, _ = str(ports[0]).split(":")
    except (IndexError, ValueError):
        raise OpsError(f"compose/compose.yaml: service {SERVICE} must publish one port as "
                       f"'127.0.0.1:<host port>:8081' (found {ports!r})") from None
    return f"http://{host}:{port}/"


def login_lines(redis_env: dict[str, str]) -> list[str]:
    return [f"url:      {url()}",
            f"user:     {redis_env['COMMANDER_HTTP_USER']}",
            f"password: {redis_env['COMMANDER_HTTP_PASSWORD']}",
            "(start it with `./invoke up --tools`; it is read-only and reachable from this machine only)"]
