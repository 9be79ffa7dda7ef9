"""One tenant's new secrets (`./invoke rotate --tenant b`): what changes in its env file, and how a password is known
without being kept.

The env file (envs/tenant-<t>.env) stays the one source of truth: the rotation writes the new values there first
(partial -> rename, through write_private), and everything else is derived from it as always (the secret files by
tenant_files, the ACL by acl.apply, PostgreSQL's verifier by postgres_admin). The previous Redis password is never
written anywhere: only its SHA-256 digest (deployment/acl.py password_hash), which Redis accepts as `#<digest>` in a
rule while the tenant's processes roll onto the new one. The roll itself is ops/data/rotate.py's (it needs the
journal).
"""
from pathlib import Path

from deployment import acl, envs
from ops.config import tenants
from ops.config.envfile import read_env, rel, write_private
from ops.core.errors import OpsError
from ops.secrets import generate

# The tenant's secrets a rotation renews. DJANGO_ADMIN_PASSWORD is a person's login, not a credential of the
# processes: it is left alone (change it in the env file, then `./invoke up --tenant <t>`).
ROTATED = ("REDIS_PASSWORD", "DJANGO_SECRET_KEY", "DATABASE_PASSWORD")


def redis_digests(name: str, values: dict[str, str]) -> dict[str, str]:
    """Each Redis user of the tenant (deployment/acl.py tenant_users: one today, two after issue 22) -> the digest of
    the password `values` (its env file's) gives it."""
    spec = acl.tenant_spec(name, values)
    return {user: acl.password_hash(values["REDIS_PASSWORD"]) for user in acl.tenant_users(spec)}


def current(name: str) -> dict[str, str]:
    return read_env(tenants.env_path(name))


def renewed(values: dict[str, str]) -> dict[str, str]:
    """`values` with a fresh value for each rotated secret."""
    return {**values, **{key: generate.generate(key) for key in ROTATED}}


def write_env(name: str, values: dict[str, str]) -> Path:
    """The tenant's env file with `values`, rendered like every env file (partial -> rename: never half written)."""
    path = tenants.env_path(name)
    partial = path.with_name(f".{path.name}.rotate-partial")  # not a tenant's file name: no task reads it
    write_private(partial, envs.render(envs.TENANT_SETTINGS, values, envs.TENANT_HEADER.format(name=name)))
    if read_env(partial) != values:  # the file everything else derives from must say exactly this
        partial.unlink()
        raise OpsError(f"{rel(path)}: the rotated file read back differently; nothing was changed: retry")
    partial.replace(path)
    return path


def new_certificate(name: str) -> Path:
    """A new client certificate for the tenant's users (same CA). Valkey 8.1 binds no certificate to a user: the old
    one still passes TLS until it expires; the password is what a rotation revokes (README, Rotate one tenant)."""
    return generate.issue_tenant_certificate(name)
