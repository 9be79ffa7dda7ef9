"""The one writer of Redis access rules: puts deployment/acl.py's rules everywhere they must be.

`apply()` renders the auth file Redis includes at every start (requirepass, maxmemory, users, renamed
commands), the healthcheck's password file and the kombu scripts it loads (deployment/lua.py),
redis-commander's settings, the monitoring users' password files (secrets/monitoring/), then brings a
running Redis in line: ACL SETUSER for every user whose rule changed since the file was last written,
ACL DELUSER for users that are gone (a removed tenant).
Nothing else in the project writes or sends an ACL rule.
"""
import json
import os
import shutil

import redis
from deployment import acl, lua, naming
from deployment.instance import UIDS
from ops.config import tenants
from ops.config.envfile import read_env, redis_settings, rel, write_private
from ops.config.paths import INSTANCE, REDIS_AUTH_CONF, REDIS_SECRETS
from ops.deploy import compose
from ops.secrets import commander as tools

# Under the instance's secrets/monitoring/ (mounted read-only: the exporter's folder into redis-exporter,
# each metrics user's into its tenant-<name>-metrics container).
EXPORTER_DIR = acl.EXPORTER_USER
EXPORTER_FILE = "password.json"
METRICS_FILE = compose.METRICS_PASSWORD_FILE


def _tenant_settings(tenant_names) -> dict[str, dict[str, str]]:
    """Each tenant's validated env file: its password and its pub/sub declarations shape its rule."""
    return {n: read_env(tenants.load(n).env_file) for n in tenant_names}


def _write(path, text: str) -> None:
    write_private(path, text, mode=0o400)
    os.chown(path, UIDS["redis"], UIDS["redis"])


def apply(tenant_names=None, live: bool = True, previous=None) -> list[str]:
    """Write the auth file (and friends) from the env files; apply what changed to the running Redis.

    previous: tenant user -> SHA-256 digests of passwords it still accepts beside its env file's (a rotation's roll,
    ops/data/rotate.py); the next apply without them drops them, live and in the file."""
    names = tenants.known_names() if tenant_names is None else list(tenant_names)
    redis_env = redis_settings()
    settings = _tenant_settings(names)
    before = acl.parse_users(REDIS_AUTH_CONF.read_text()) if REDIS_AUTH_CONF.exists() else {}
    wanted = acl.rules(redis_env, settings, previous)
    scripts = lua.loaded_scripts()
    for path, text in ((REDIS_AUTH_CONF, acl.auth_conf(redis_env, settings, previous)),
                       (REDIS_SECRETS / "health.pass", redis_env["REDIS_HEALTH_PASSWORD"] + "\n"),
                       # kombu's and Celery's Lua, SCRIPT LOADed by the healthcheck after every start (lua.py)
                       (REDIS_SECRETS / lua.LOAD_FILE, lua.load_commands(scripts)),
                       (REDIS_SECRETS / lua.EXPECT_FILE, lua.load_expectation(scripts))):
        _write(path, text)
    tools.write_settings(redis_env, UIDS["commander"])  # redis-commander's logins, same source
    _write_monitoring_passwords(redis_env, names)
    report = [f"rendered {rel(REDIS_AUTH_CONF)} ({len(names)} tenant users)"]
    changed = {u: r for u, r in wanted.items() if before.get(u) != r}
    removed = [u for u in before if u not in wanted]
    if live and (changed or removed):
        report.append(_apply_live(changed, removed))
    return report


def _private_file(path, text: str, uid: int) -> None:
    """A password file only `uid` may read, in a folder only `uid` may enter (mounted read-only)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chown(path.parent, 0, 0)
    os.chmod(path.parent, 0o700)  # root's while writing
    if not (path.exists() and path.read_text() == text):
        write_private(path, text, mode=0o400)
    os.chown(path, uid, uid)
    os.chown(path.parent, uid, uid)
    os.chmod(path.parent, 0o500)


def _write_monitoring_passwords(redis_env: dict[str, str], names) -> None:
    """The monitoring users' password files: redis-exporter's (its JSON map: address -> password) and each
    tenant metrics exporter's. Derived from envs/redis.env like the rules, so they always match."""
    root = INSTANCE.monitoring_secrets
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)  # only folders below, each closed to all but its user
    # redis_exporter 1.69 (Debian 13) looks its password up under the address with the user in it when
    # -redis.user is set (1.45 used the bare address); without a match it connects unauthenticated.
    address = f"rediss://{acl.EXPORTER_USER}@{naming.REDIS_SERVICE}:{naming.REDIS_TLS_PORT}"
    _private_file(root / EXPORTER_DIR / EXPORTER_FILE,
                  json.dumps({address: acl.monitoring_password(redis_env, acl.EXPORTER_USER)}) + "\n",
                  UIDS["monitoring"])
    wanted = {EXPORTER_DIR}
    for name in names:
        user = naming.metrics_user(name)
        wanted.add(user)
        _private_file(root / user / METRICS_FILE, acl.monitoring_password(redis_env, user), UIDS["app"])
    for folder in root.iterdir():
        if folder.is_dir() and folder.name not in wanted:  # a removed tenant's
            shutil.rmtree(folder)


def _apply_live(changed: dict[str, list[str]], removed: list[str]) -> str:
    from ops.deploy import redis_admin

    try:
        client = redis_admin.operator(timeout=5)
        for user, rule in changed.items():
            client.execute_command("ACL", "SETUSER", user, *rule)
        if removed:
            client.execute_command("ACL", "DELUSER", *removed)
    except (redis.ConnectionError, redis.AuthenticationError, OSError):
        return "Redis is not running here: the rules take effect when it starts"
    except redis.ResponseError as exc:
        if "Unknown command or category name in ACL" not in str(exc):
            raise
        # The running server is an older one (the previous release's Redis 7.0 during an upgrade): it does not
        # know a command of the new rules. The auth file is written; the server recreated from the new image
        # reads it at start.
        return f"the running server does not know the new rules ({exc}): they take effect when it restarts"
    parts = [f"applied ACL user {', '.join(changed)}" if changed else "",
             f"removed {', '.join(removed)}" if removed else ""]
    return " and ".join(p for p in parts if p) + " to the running Redis"
