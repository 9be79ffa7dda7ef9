"""Tenants' own Django + Celery projects ("bring your own project"), for tests/containers/test_own_projects.py.

Two projects the deployment was not written for:
  shop     tests/fixtures/projects/shop: written the way a third party writes one (config/ settings, Celery app
           and WSGI; a custom User model without username; settings read from the environment at import;
           its own Redis cache, Redis results, task routes, two queues and a beat schedule; celery==5.6.3).
  celex    Celery 5.7.0's own examples/django, taken unmodified from the sdist on PyPI (settings that still
           name RabbitMQ on localhost, DEBUG=True, a hard-coded SECRET_KEY): only the Dockerfile is added.
Each becomes a tenant through `./invoke tenant-add NAME --project DIR ...` (OwnProject.tenant_add_args).
"""
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from deployment import naming
from deployment.instance import PROJECT_LABEL
from ops.config.envfile import read_env
from ops.config.paths import ARTIFACTS, INSTANCE, ROOT, TLS
from ops.config.tenants import env_path
from ops.deploy import containers, redis_admin
from tests.support import deployment as d

FIXTURES = ROOT / "tests" / "fixtures" / "projects"
TEMPLATE_DOCKERFILE = ROOT / "app" / "project-template" / "Dockerfile"

CELERY_VERSION = "5.7.0"
CELERY_SDIST = f"celery-{CELERY_VERSION}.tar.gz"
CELERY_SDIST_SHA256 = "6a5dfcf6662287204f009a02002b9e66c83d4105e47ebabdc7079108772fc6f0"  # PyPI's
EXAMPLE_IN_SDIST = f"celery-{CELERY_VERSION}/examples/django/"
SDIST_CACHE = ARTIFACTS / "sdists"  # git-ignored; kept between runs

# How the tests run Django management commands in a tenant container: the glue's manage.py, which always uses
# the glue's settings (a project's own manage.py may setdefault its own DJANGO_SETTINGS_MODULE).
MANAGE = ("python", "-m", "tenantstack.manage")
SHELL_MARK = "@@own-projects-result "  # the line of `shell -c` output holding the snippet's JSON result


@dataclass(frozen=True)
class OwnProject:
    """What `./invoke tenant-add` is told about a project (deployment/tenant.py reads it back)."""

    django_settings: str
    celery_app: str
    wsgi_app: str
    roles: tuple[str, ...] = ()
    queues: tuple[str, ...] = ()
    pools: tuple[str, ...] = ()  # name:queue+queue:concurrency, `default` first

    def tenant_add_args(self, folder: Path) -> list[str]:
        args = ["--project", str(folder), "--django-settings", self.django_settings,
                "--celery-app", self.celery_app, "--wsgi-app", self.wsgi_app]
        for flag, values in (("--roles", self.roles), ("--queues", self.queues), ("--pools", self.pools)):
            if values:
                args += [flag, ",".join(values)]
        return args

    def pool_services(self, tenant: str) -> dict[str, str]:
        """pool -> its worker service (the default pool only when no pools are declared)."""
        names = [p.split(":", 1)[0] for p in self.pools] or ["default"]
        return {name: naming.pool_service(tenant, name) for name in names}


SHOP = OwnProject("config.settings", "config.celery_app:app", "config.wsgi:application",
                  roles=("cache", "results"), queues=("shop", "reports"),
                  pools=("default:shop:1", "reports:reports:1"))
# Celery's example as it ships: no cache, results in the database (django-db), the tenant's one default queue.
CELERY_EXAMPLE = OwnProject("proj.settings", "proj.celery:app", "proj.wsgi:application")


def dockerfile_text() -> str:
    """The Dockerfile every tenant project copies verbatim (app/project-template/Dockerfile)."""
    return TEMPLATE_DOCKERFILE.read_text()


def shop_project() -> Path:
    """The shop fixture's folder (committed, used in place as the tenant's build context)."""
    return FIXTURES / "shop"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def celery_sdist(cache: Path = SDIST_CACHE) -> Path:
    """Celery's sdist from PyPI (pip download, no wheel, no dependencies), cached and checked against PyPI's hash."""
    path = cache / CELERY_SDIST
    if path.is_file() and _sha256(path) == CELERY_SDIST_SHA256:
        return path
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        proc = subprocess.run([sys.executable, "-m", "pip", "download", f"celery=={CELERY_VERSION}",
                               "--no-binary", ":all:", "--no-deps", "--dest", tmp],
                              capture_output=True, text=True, timeout=900)
        got = Path(tmp) / CELERY_SDIST
        if proc.returncode or not got.is_file():
            raise AssertionError(f"pip download celery=={CELERY_VERSION} (sdist) failed (exit {proc.returncode}):\n"
                                 f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        digest = _sha256(got)
        if digest != CELERY_SDIST_SHA256:
            raise AssertionError(f"{CELERY_SDIST} has sha256 {digest}, not PyPI's {CELERY_SDIST_SHA256}")
        got.replace(path)
    return path


def celery_django_example(dest: Path, cache: Path = SDIST_CACHE) -> Path:
    """Celery 5.7.0's examples/django, extracted unmodified into dest, plus the project Dockerfile template.

    The example as shipped: proj/settings.py (settings module proj.settings: RabbitMQ broker on localhost,
    results in db+sqlite via SQLAlchemy, DEBUG=True, a literal SECRET_KEY, ALLOWED_HOSTS=[], no
    DEFAULT_AUTO_FIELD), proj/celery.py (Celery app proj.celery:app, Celery('proj') configured from Django's
    settings with namespace CELERY, autodiscover_tasks), proj/wsgi.py (proj.wsgi:application), proj/urls.py (no
    routes), demoapp (model Widget with its migration; shared tasks add, mul, xsum, count_widgets, rename_widget,
    error_task, error_backoff_test) and requirements.txt (django>=2.2.1, sqlalchemy>=1.2.18, celery>=5.0.5:
    usable as it is under the base image's constraints, so none is added).
    """
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(celery_sdist(cache)) as sdist:
        members = []
        for member in sdist.getmembers():
            if member.name.startswith(EXAMPLE_IN_SDIST) and member.name != EXAMPLE_IN_SDIST and \
                    (member.isfile() or member.isdir()):
                member.name = member.name[len(EXAMPLE_IN_SDIST):]
                members.append(member)
        sdist.extractall(dest, members=members, filter="data")
    for needed in ("manage.py", "proj/settings.py", "proj/celery.py", "proj/wsgi.py", "demoapp/tasks.py",
                   "requirements.txt"):
        assert (dest / needed).is_file(), f"Celery {CELERY_VERSION}'s examples/django has no {needed}"
    (dest / "Dockerfile").write_text(dockerfile_text())
    return dest


def add_env_lines(tenant: str, values: dict[str, str]) -> None:
    """Append plain KEY=value lines to the tenant's env file, as an operator would for the project's own settings."""
    path = env_path(tenant)
    text = path.read_text()
    path.write_text(text + ("" if text.endswith("\n") else "\n") + "".join(f"{k}={v}\n" for k, v in values.items()))


# ---- talking to a tenant's project -----------------------------------------------------------------------

class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # the 3xx itself is the answer


def request(method: str, url: str, data=None, headers: dict | None = None,
            timeout: float = 60) -> tuple[int, dict, object]:
    """One HTTP request, redirects not followed: (status, response headers, JSON body or text or None)."""
    body = None if data is None else json.dumps(data).encode()
    req = urllib.request.Request(url, data=body, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(req, timeout=timeout) as resp:
            status, head, raw = resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        status, head, raw = exc.code, dict(exc.headers), exc.read()
    try:
        return status, head, json.loads(raw) if raw else None
    except ValueError:
        return status, head, raw.decode(errors="replace")


def docker_exec(service: str, *argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", "exec", d.container(service), *argv], capture_output=True, text=True,
                          timeout=timeout)


def manage(service: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """A Django management command in one of the tenant's containers, with the glue's settings."""
    return docker_exec(service, *MANAGE, *args, timeout=timeout)


def shell_json(service: str, code: str, timeout: float = 300):
    """Run `code` in `manage.py shell -c` in the container; it assigns `result`, returned here (through JSON)."""
    snippet = f"{code}\nimport json as _json\nprint({SHELL_MARK!r} + _json.dumps(result, default=str))\n"
    proc = manage(service, "shell", "-c", snippet, timeout=timeout)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(SHELL_MARK)]
    assert proc.returncode == 0 and lines, (f"shell in {service} exited {proc.returncode}:\n"
                                            f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len(SHELL_MARK):])


def pool_host(tenant: str, pool: str) -> str:
    """The container hostname of a pool's worker: the host part of its Celery node name (`<name>@<host>`)."""
    return d.hostname(naming.pool_service(tenant, pool))


def host_of(node: str) -> str:
    """The host part of a Celery node name (a task's self.request.hostname), e.g. celery@3f2a… -> 3f2a…"""
    return node.partition("@")[2]


def logs(service: str) -> str:
    proc = subprocess.run(["docker", "logs", d.container(service)], capture_output=True, text=True, timeout=60)
    return proc.stdout + proc.stderr


# ---- what the operator sees on Redis and the engine ---------------------------------------------------------

def keys(client, match: str = "*") -> list[str]:
    return [k.decode() for k in client.scan_iter(match=match, count=1000)]


def acl_refusals(client, users) -> list[dict]:
    """The server's ACL LOG entries of these users (read only; tests/conftest.py clears the log after each test)."""
    return [e for e in client.acl_log(count=1000) if e.get("username") in set(users)]


def tenant_users(tenant: str) -> tuple[str, str]:
    return naming.redis_user(tenant), naming.metrics_user(tenant)


def secret_strings(tenant: str) -> list[str]:
    """The tenant's secrets: the secret rows of its env file (16+ chars) and the first line of each private key."""
    from deployment import envs

    secret = {s.name for s in envs.TENANT_SETTINGS if s.secret}
    values = [v for k, v in read_env(env_path(tenant)).items() if k in secret and len(v) >= 16]
    keys_ = [TLS / f"{cn}.key" for cn in tenant_users(tenant)]
    return values + [p.read_text().splitlines()[1] for p in keys_ if p.exists()]


def shown_by_inspect(container: dict) -> list[str]:
    """What `docker inspect` shows anyone allowed to run it: environment, command line, labels."""
    config = container["Config"]
    return [*(config.get("Env") or []), *(container.get("Args") or []), *(config.get("Cmd") or []),
            *(config.get("Entrypoint") or []), container.get("Path") or "", *(config.get("Labels") or {}).values()]


def _instance_containers() -> list[dict]:
    label = f"label=com.docker.compose.project={INSTANCE.compose_project}"
    ids = subprocess.run(["docker", "ps", "-aq", "--filter", label], capture_output=True, text=True,
                         check=True).stdout.split()
    if not ids:
        return []
    return json.loads(subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True, check=True).stdout)


def tenant_containers(tenants) -> list[dict]:
    """`docker inspect` of every container (running or not) of the instance that belongs to one of `tenants`."""
    wanted = set(tenants)
    return [c for c in _instance_containers()
            if naming.tenant_of(c["Config"]["Labels"].get("com.docker.compose.service", "")) in wanted]


def remove_tenant(tenant: str) -> None:
    """Everything `tenant-add` and `up` made for the tenant, except its ACL users (`./invoke init` drops those)."""
    images = {c["Config"]["Image"] for c in tenant_containers([tenant])}  # the tenant's own project image
    d.invoke("down", "--tenant", tenant, check=False, timeout=600)
    leftovers = tenant_containers([tenant])  # e.g. a pool's worker the generated Compose file no longer names
    if leftovers:
        subprocess.run(["docker", "rm", "-f", *(c["Id"] for c in leftovers)], capture_output=True, timeout=120)
    certificates = [TLS / f"{cn}.{ext}" for cn in tenant_users(tenant) for ext in ("crt", "key")]
    for path in (env_path(tenant), *certificates):
        path.unlink(missing_ok=True)
    shutil.rmtree(INSTANCE.tenant_secrets(tenant), ignore_errors=True)
    subprocess.run(["docker", "volume", "rm", "-f", containers.volume(naming.data_volume(tenant))],
                   capture_output=True, timeout=120)
    redis_admin.unlink_matching(d.client(), naming.key_prefix(tenant) + "*")
    in_use = {c["Config"]["Image"] for c in _instance_containers()}
    for image in images - in_use:  # never an image another container of the instance still runs
        subprocess.run(["docker", "image", "rm", image], capture_output=True, timeout=120)


def remove_failed_build_containers(since: float) -> list[str]:
    """The classic builder keeps the container of a build step that failed (exited, in no Compose project, its image
    an untagged layer): remove those created since `since` (epoch seconds), so a refused build leaves nothing behind."""
    listed = subprocess.run(["docker", "ps", "-a", "--filter", "status=exited", "--format", "{{.ID}}"],
                            capture_output=True, text=True, timeout=60).stdout.split()
    if not listed:
        return []
    found = json.loads(subprocess.run(["docker", "inspect", *listed], capture_output=True, text=True,
                                      timeout=60).stdout or "[]")
    stale = [c["Id"] for c in found  # a build step: no Compose project, an image that is a bare layer id
             if PROJECT_LABEL not in (c["Config"].get("Labels") or {})
             and ":" not in c["Config"]["Image"].removeprefix("sha256:")
             and datetime.fromisoformat(c["Created"][:19] + "+00:00").timestamp() >= since - 1]
    if stale:
        subprocess.run(["docker", "rm", *stale], capture_output=True, timeout=120)
    return stale
