"""`invoke tenant-add`: everything a new tenant needs, without editing any compose file."""
import os

import redis
from tenantstack import naming

from . import redis_admin, secrets, tenants, tls
from .envfile import render, rel, write_private
from .errors import OpsError
from .paths import TLS


def add(name: str, port: int = 0) -> list[str]:
    if not naming.is_valid_tenant_name(name):
        raise OpsError(f"invalid tenant name {name!r}: use {naming.TENANT_NAME_RULE}")
    if name in tenants.known_names():
        raise OpsError(f"tenant '{name}' already exists ({rel(tenants.env_path(name))}): pick another name")
    if secrets.missing():
        secrets.init()
    port = port or tenants.next_free_port()
    taken = {tenants.web_port_of(n): n for n in tenants.known_names()}
    if port in taken:
        raise OpsError(f"port {port} is already tenant {taken[port]}'s WEB_PORT: choose another with --port")
    report = []
    values = tenants.tenant_env_values(name, port, secret=secrets._generate)
    path = tenants.env_path(name)
    write_private(path, render(values, tenants.TENANT_ENV_HEADER.format(name=name)))
    report.append(f"created  {rel(path)} (web on 127.0.0.1:{port})")
    cn = naming.redis_user(name)
    tls.make_leaf(TLS / "ca.crt", TLS / "ca.key", TLS / f"{cn}.crt", TLS / f"{cn}.key", cn)
    uid = secrets.container_uids()["app"]
    os.chown(TLS / f"{cn}.key", uid, uid)
    os.chmod(TLS / f"{cn}.key", 0o400)
    report.append(f"created  {rel(TLS / (cn + '.crt'))}")
    secrets.write_redis_auth(tenants.known_names())
    report.append("rendered secrets/redis/auth.conf")
    report.append(_apply_live(name, values["REDIS_PASSWORD"]))
    report.append(f"start it with: ./invoke up --tenant {name}")
    return report


def _apply_live(name: str, password: str) -> str:
    """If Redis is running, create the ACL user now (the auth file covers the next restart)."""
    rule = secrets.tenant_acl_rule(name, password).split()
    try:
        client = redis_admin.operator(timeout=5)
        client.execute_command("ACL", "SETUSER", *rule)
    except (redis.ConnectionError, OSError):
        return "Redis is not running: the ACL user takes effect when it starts"
    return f"applied ACL user {rule[0]} to the running Redis"
