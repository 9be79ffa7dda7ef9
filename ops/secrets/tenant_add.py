"""`invoke tenant-add`: everything a new tenant needs, without editing any compose file."""
from deployment import envs, naming
from ops.config import tenants
from ops.config.envfile import rel, write_private
from ops.config.paths import INSTANCE
from ops.core.errors import OpsError
from ops.secrets import acl, tenant_files
from ops.secrets import generate as secrets


def add(name: str, port: int = 0) -> list[str]:
    if not naming.is_valid_tenant_name(name):
        raise OpsError(f"invalid tenant name {name!r}: use {naming.TENANT_NAME_RULE}")
    if name in tenants.known_names():
        raise OpsError(f"tenant '{name}' already exists ({rel(tenants.env_path(name))}): pick another name")
    report = secrets.init() if secrets.missing() else []
    port = port or tenants.next_free_port()
    taken = {tenants.web_port_of(n): n for n in tenants.known_names()}
    if port in taken:
        raise OpsError(f"port {port} is already tenant {taken[port]}'s WEB_PORT: choose another with --port")
    if not INSTANCE.first_web_port <= port <= INSTANCE.last_web_port:
        raise OpsError(f"port {port} is outside instance {INSTANCE.name}'s web ports "
                       f"{INSTANCE.first_web_port}-{INSTANCE.last_web_port}: choose one of those with --port")
    values = envs.tenant_values(name, port, secret=secrets.generate)
    path = tenants.env_path(name)
    write_private(path, envs.render(envs.TENANT_SETTINGS, values, envs.TENANT_HEADER.format(name=name)))
    report.append(f"created  {rel(path)} (web on 127.0.0.1:{port})")
    report.append(f"created  {rel(secrets.issue_tenant_certificate(name))}")
    report += tenant_files.write(name)
    report += acl.apply(tenants.known_names())
    report.append(f"start it with: ./invoke up --tenant {name}")
    return report
