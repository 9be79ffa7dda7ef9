"""Where things are on the host. One place for every path the ops tasks use."""
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_DIR = ROOT / "compose"
COMPOSE_FILE = COMPOSE_DIR / "compose.yaml"
TENANT_TEMPLATE = COMPOSE_DIR / "tenant.yaml"
TENANTS_GENERATED = COMPOSE_DIR / "tenants.generated.yaml"
ENVS = ROOT / "envs"
REDIS_ENV = ENVS / "redis.env"
SECRETS = ROOT / "secrets"
TLS = SECRETS / "tls"
REDIS_SECRETS = SECRETS / "redis"
REDIS_AUTH_CONF = REDIS_SECRETS / "auth.conf"
COMMANDER_SETTINGS = SECRETS / "commander" / "settings.json"  # redis-commander's logins (ops/tools.py)
REDIS_CONF = ROOT / "redis" / "redis.conf"
BACKUPS = ROOT / "backups"
ARTIFACTS = ROOT / "test-artifacts"

COMPOSE_PROJECT = "tenantstack"
