"""Where things are for the instance this process works on (TENANTSTACK_INSTANCE): a view of the model.

One process works on one instance; every path, the Compose project and the ports come from
deployment.instance, which owns them. See that module for how instances are laid out.
"""
import sys

from deployment.errors import DeploymentError
from deployment.instance import current

try:
    INSTANCE = current()
except DeploymentError as exc:  # e.g. a bad TENANTSTACK_INSTANCE: one line, before any task runs
    sys.stderr.write(f"error: {exc}\n")
    raise SystemExit(2) from None

ROOT = INSTANCE.root
COMPOSE_DIR = ROOT / "compose"
COMPOSE_FILE = COMPOSE_DIR / "compose.yaml"
TENANT_TEMPLATE = COMPOSE_DIR / "tenant.yaml"
TENANTS_GENERATED = INSTANCE.tenants_compose_file
EXAMPLES = INSTANCE.examples
ENVS = INSTANCE.envs
REDIS_ENV = INSTANCE.redis_env
SECRETS = INSTANCE.secrets
TLS = INSTANCE.tls
REDIS_SECRETS = INSTANCE.redis_secrets
REDIS_AUTH_CONF = INSTANCE.redis_auth_conf
COMMANDER_SETTINGS = INSTANCE.commander_settings  # redis-commander's logins (ops/secrets/commander.py)
REDIS_CONF = ROOT / "redis" / "redis.conf"
BACKUPS = INSTANCE.backups
# The instance's own operational state (journal of interrupted operations, what `up` last started):
# per instance, never shared, so one instance's recovery never acts on another.
STATE = INSTANCE.home / "state"
ARTIFACTS = ROOT / "test-artifacts"
COMPOSE_PROJECT = INSTANCE.compose_project
