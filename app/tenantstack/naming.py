"""Every name derived from a tenant's short name lives here, once.

Both the app (inside the containers) and the ops tasks (on the host) import this
module, so a prefix, a queue, a Redis user or a channel pattern is spelled in one place.
"""
import re

TENANT_NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,14}$")
TENANT_NAME_RULE = "a lowercase letter followed by up to 14 lowercase letters or digits"

REDIS_TLS_PORT = 6380  # the only port Redis listens on (TLS); published on 127.0.0.1 only
BROKER_DB = 0  # every tenant shares DB 0; isolation is by key prefix + ACL, not by DB number


def is_valid_tenant_name(name: str) -> bool:
    return bool(TENANT_NAME_RE.match(name or ""))


def redis_user(tenant: str) -> str:
    """The tenant's Redis ACL user."""
    return f"tenant-{tenant}"


def key_prefix(tenant: str) -> str:
    """kombu's global_keyprefix: every key and channel of the tenant starts with it."""
    return f"tenant-{tenant}:"


def queue_name(tenant: str) -> str:
    """The tenant's default Celery queue."""
    return f"tenant-{tenant}"


def compose_profile(tenant: str) -> str:
    return f"tenant-{tenant}"


def service_name(tenant: str, role: str) -> str:
    """Compose service of one tenant role: web, worker or beat."""
    return f"tenant-{tenant}-{role}"


def data_volume(tenant: str) -> str:
    """The Compose volume (short name) holding the tenant's database and beat schedule."""
    return f"tenant-{tenant}-data"


def env_file_name(tenant: str) -> str:
    return f"tenant-{tenant}.env"


def acl_channel_patterns(tenant: str) -> list[str]:
    """Pub/sub patterns the tenant's ACL user may use.

    kombu PSUBSCRIBEs literal patterns and Redis 7.0 matches PSUBSCRIBE patterns
    literally against the ACL, so the exact patterns kombu sends must be listed
    besides the glob that covers PUBLISH/SUBSCRIBE.
    """
    p = key_prefix(tenant)
    db = BROKER_DB
    return [f"{p}*", f"{p}/{db}.celery.pidbox", f"{p}/{db}.celeryev/worker.*", f"{p}/{db}.celeryev/*"]
