"""The instance's tenants: a tenant exists when its env file (or a committed .example) exists.

A tenant declared by a committed example (a, b) and removed by `./invoke tenant-remove` is listed in the instance's
state (REMOVED): its example no longer declares it here, so `init` and `up` do not bring it back; `tenant-add` does.

The tenant's env file is the one place for its own facts (its web port, its secrets), validated
against the table in deployment/envs.py; every other tenant-derived name comes from deployment.naming.
"""
import json
import os
from dataclasses import dataclass
from pathlib import Path

from deployment import envs, naming
from deployment import tenant as tenant_model
from deployment.errors import DeploymentError as OpsError
from ops.config.envfile import read_env, rel, require
from ops.config.paths import ENVS, EXAMPLES, INSTANCE, STATE

REMOVED = STATE / "removed-tenants.json"


@dataclass(frozen=True)
class Tenant:
    name: str
    web_port: int
    env_file: Path
    spec: tenant_model.Spec | None = None  # its declarations (pools, roles, project); None only in old callers

    @property
    def profile(self) -> str:
        return naming.compose_profile(self.name)

    def service(self, role: str) -> str:
        return naming.service_name(self.name, role)

    def services(self) -> list[str]:
        """Every Compose service of the tenant: web, a worker per pool (the default pool's first), beat."""
        pools = self.spec.pools if self.spec else (tenant_model.Pool(tenant_model.DEFAULT_POOL, (), 1),)
        return [self.service("web"), *(p.service(self.name) for p in pools), self.service("beat")]


@dataclass(frozen=True)
class Declared:
    """One tenant as its env file declares it, read once: what compose generation and the ACL hand down."""
    name: str
    env_file: Path
    values: dict  # the env file's values ({} before `init` wrote it: every default applies)
    spec: tenant_model.Spec
    web_port: int

    @property
    def exists(self) -> bool:
        return bool(self.values)

    def build_context(self) -> Path:
        """The project's folder (APP_BUILD_CONTEXT): absolute, or relative to the checkout."""
        path = Path(self.spec.project.build_context)
        return path if path.is_absolute() else INSTANCE.root / path


def _spec(name: str, values: dict, path: Path) -> tenant_model.Spec:
    """The declarations in an env file's values; one line naming the file and every problem otherwise."""
    found, problems = tenant_model.read(name, values)
    if problems:
        raise OpsError(f"{rel(path)}: {'; '.join(problems)}")
    return found


def declared(name: str) -> Declared:
    """The tenant's env file read and cross-checked once (defaults when it does not exist yet)."""
    path = env_path(name)
    values = read_env(path) if path.exists() else {}
    return Declared(name, path, values, _spec(name, values, path), web_port_of(name))


def env_path(name: str) -> Path:
    return ENVS / naming.env_file_name(name)


def example_path(name: str) -> Path:
    return EXAMPLES / (naming.env_file_name(name) + ".example")


def known_names() -> list[str]:
    pattern = naming.env_file_re()
    own = {m.group(1) for p in ENVS.glob("*.env") if (m := pattern.match(p.name))}
    examples = {m.group(1) for p in EXAMPLES.glob("*.env.example") if (m := pattern.match(p.name))}
    return sorted(own | (examples - removed_names()))


def removed_names() -> set[str]:
    """Tenants removed from this instance whose committed example would otherwise declare them again."""
    try:
        return set(json.loads(REMOVED.read_text()))
    except FileNotFoundError:
        return set()
    except (OSError, ValueError):
        raise OpsError(f"{REMOVED} is unreadable: it lists the removed tenants as a JSON list of names; "
                       "fix or delete it") from None


def mark_removed(name: str, removed: bool = True) -> None:
    """Record (or with removed=False forget) that `name` was removed; written partial -> rename."""
    names = removed_names() | {name} if removed else removed_names() - {name}
    if names == removed_names():
        return
    STATE.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = REMOVED.with_suffix(".partial")
    tmp.write_text(json.dumps(sorted(names)) + "\n")
    os.replace(tmp, REMOVED)


def load(name: str) -> Tenant:
    """The tenant, or one line naming the known tenants."""
    if name not in known_names():
        known = ", ".join(known_names()) or "none"
        raise OpsError(f"unknown tenant '{name}': known tenants are {known} "
                       f"(add one with `./invoke tenant-add {name}`)")
    path = env_path(name)
    if not path.exists():
        raise OpsError(f"{rel(path)} is missing: run `./invoke init` to generate it from {rel(example_path(name))}")
    values = read_env(path)
    require(values, envs.TENANT_SETTINGS, path)
    if values["TENANT"] != name:
        raise OpsError(f"{rel(path)}: TENANT={values['TENANT']} but the file is for tenant '{name}': set TENANT={name}")
    return Tenant(name=name, web_port=int(values["WEB_PORT"]), env_file=path, spec=_spec(name, values, path))


def load_many(names) -> list[Tenant]:
    return [load(n) for n in names]


def web_port_of(name: str) -> int:
    """The port of a tenant from its env file, else where its example puts it in this instance's block."""
    try:
        if env_path(name).exists():
            return int(read_env(env_path(name)).get("WEB_PORT", "0"))
        if example_path(name).exists():
            return INSTANCE.web_port_from_example(int(read_env(example_path(name)).get("WEB_PORT", "0")))
    except ValueError:
        pass
    return 0


def next_free_port() -> int:
    used = {web_port_of(n) for n in known_names()}
    free = [p for p in range(INSTANCE.first_web_port, INSTANCE.last_web_port + 1) if p not in used]
    if not free:
        raise OpsError(f"instance {INSTANCE.name} has no free web port left in "
                       f"{INSTANCE.first_web_port}-{INSTANCE.last_web_port}: use another instance")
    return free[0]
