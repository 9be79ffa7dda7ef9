"""The instance's tenants: a tenant exists when its env file (or a committed .example) exists.

The tenant's env file is the one place for its own facts (its web port, its secrets), validated
against the table in deployment/envs.py; every other tenant-derived name comes from deployment.naming.
"""
from dataclasses import dataclass
from pathlib import Path

from deployment import envs, naming
from deployment.errors import DeploymentError as OpsError
from ops.config.envfile import read_env, rel, require
from ops.config.paths import ENVS, EXAMPLES, INSTANCE


@dataclass(frozen=True)
class Tenant:
    name: str
    web_port: int
    env_file: Path

    @property
    def profile(self) -> str:
        return naming.compose_profile(self.name)

    def service(self, role: str) -> str:
        return naming.service_name(self.name, role)


def env_path(name: str) -> Path:
    return ENVS / naming.env_file_name(name)


def example_path(name: str) -> Path:
    return EXAMPLES / (naming.env_file_name(name) + ".example")


def known_names() -> list[str]:
    pattern = naming.env_file_re()
    files = [*ENVS.glob("*.env"), *EXAMPLES.glob("*.env.example")]
    return sorted({m.group(1) for p in files if (m := pattern.match(p.name))})


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
    return Tenant(name=name, web_port=int(values["WEB_PORT"]), env_file=path)


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
