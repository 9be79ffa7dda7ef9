"""The `tools` profile: redis-commander's settings file and its login.

secrets/commander/settings.json is derived from envs/redis.env on every `./invoke init` and `./invoke up`
(like secrets/redis/auth.conf) and mounted read-only into the container, where
tools/redis-commander/config/production.js reads it. Passwords therefore never appear in the
container's environment or command line (`docker inspect`).
"""
import json
import os

from deployment import acl, naming
from ops.config.envfile import write_private
from ops.config.paths import COMMANDER_SETTINGS, INSTANCE

SERVICE = naming.TOOLS_SERVICE
REDIS_HOST = naming.REDIS_SERVICE  # the Compose service name; also in the server certificate's SANs
REDIS_USER = acl.COMMANDER_USER  # the read-only ACL user deployment/acl.py renders


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
    """The UI's address on this host: the instance's tools port (deployment/instance.py)."""
    return f"http://127.0.0.1:{INSTANCE.tools_port}/"


def login_lines(redis_env: dict[str, str]) -> list[str]:
    return [f"url:      {url()}",
            f"user:     {redis_env['COMMANDER_HTTP_USER']}",
            f"password: {redis_env['COMMANDER_HTTP_PASSWORD']}",
            "(start it with `./invoke up --tools`; it is read-only and reachable from this machine only)"]
