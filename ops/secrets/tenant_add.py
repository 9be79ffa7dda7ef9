"""`invoke tenant-add`: everything a new tenant needs, without editing any compose file."""
from pathlib import Path

from deployment import envs, naming
from deployment import tenant as tenant_model
from ops.config import tenants
from ops.config.envfile import rel, write_private
from ops.config.paths import INSTANCE
from ops.core.errors import OpsError
from ops.secrets import acl, tenant_files
from ops.secrets import generate as secrets

# tenant-add's options -> the env file rows they set (README, Bring your own project).
DECLARATIONS = {"project": "APP_BUILD_CONTEXT", "django_settings": "TENANT_DJANGO_SETTINGS",
                "celery_app": "TENANT_CELERY_APP", "wsgi_app": "TENANT_WSGI_APP", "roles": "REDIS_ROLES",
                "queues": "CELERY_QUEUES", "pools": "WORKER_POOLS", "database": "DATABASE"}


def declarations(name: str, given: dict) -> dict[str, str]:
    """The env rows tenant-add's options set, validated as the env file will be; every problem in one line."""
    values = {DECLARATIONS[k]: str(v) for k, v in given.items() if v}
    if "APP_BUILD_CONTEXT" in values:
        folder = Path(values["APP_BUILD_CONTEXT"]).expanduser().resolve()
        if not (folder / "Dockerfile").is_file():
            raise OpsError(f"--project {values['APP_BUILD_CONTEXT']}: {folder} has no Dockerfile: copy "
                           "app/project-template/Dockerfile into the project's folder first")
        values["APP_BUILD_CONTEXT"] = str(folder)
    problems = [p for p in envs.problems(envs.TENANT_SETTINGS, values) if not p.startswith("missing ")]
    _, cross = tenant_model.read(name, values)
    if problems or cross:  # the model repeats a list row's own problem: each once
        raise OpsError(f"tenant {name}: {'; '.join(dict.fromkeys([*problems, *cross]))}")
    return values


def add(name: str, port: int = 0, **given) -> list[str]:
    """Create tenant `name`; `given`: DECLARATIONS' options (its project, roles, queues, pools)."""
    if not naming.is_valid_tenant_name(name):
        raise OpsError(f"invalid tenant name {name!r}: use {naming.TENANT_NAME_RULE}")
    if name in tenants.known_names():
        raise OpsError(f"tenant '{name}' already exists ({rel(tenants.env_path(name))}): pick another name")
    declared = declarations(name, given)
    report = secrets.init() if secrets.missing() else []
    port = port or tenants.next_free_port()
    taken = {tenants.web_port_of(n): n for n in tenants.known_names()}
    if port in taken:
        raise OpsError(f"port {port} is already tenant {taken[port]}'s WEB_PORT: choose another with --port")
    if not INSTANCE.first_web_port <= port <= INSTANCE.last_web_port:
        raise OpsError(f"port {port} is outside instance {INSTANCE.name}'s web ports "
                       f"{INSTANCE.first_web_port}-{INSTANCE.last_web_port}: choose one of those with --port")
    values = {**envs.tenant_values(name, port, secret=secrets.generate), **declared}
    path = tenants.env_path(name)
    write_private(path, envs.render(envs.TENANT_SETTINGS, values, envs.TENANT_HEADER.format(name=name)))
    tenants.mark_removed(name, removed=False)  # a removed example tenant added again: declared by its env file now
    report.append(f"created  {rel(path)} (web on 127.0.0.1:{port})")
    report.append(f"created  {rel(secrets.issue_tenant_certificate(name))}")
    report += tenant_files.write(name)
    report += acl.apply(tenants.known_names())
    report.append(f"start it with: ./invoke up --tenant {name}")
    return report
