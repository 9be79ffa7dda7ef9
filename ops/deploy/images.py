"""Each tenant's project image: built FROM the instance's base images, then checked against what the ACL allows.

The base images (`app`: runtime and glue, `app-build`: with compilers) are Compose build definitions in
compose/compose.yaml; a tenant's image is the build definition on its web service (ops/deploy/compose.py
tenant_build), so `compose build tenant-<t>-web` builds it once from its APP_BUILD_CONTEXT. Afterwards the image
is asked what it runs (python -m tenantstack.image_check --json): kombu's and Celery's Lua scripts are allowed in
the tenant's ACL by SHA-1, computed from this checkout's kombu and Celery (deployment/lua.py), so an image whose
scripts differ would have its broker or chord calls refused in the middle of a task. `up` refuses it first, in one line.
"""
import json
import time

from deployment import lua
from ops.config import tenants
from ops.config.envfile import rel
from ops.config.paths import INSTANCE
from ops.core.errors import OpsError
from ops.core.run import probe
from ops.deploy import compose


def check_context(declared: tenants.Declared) -> None:
    """The project's folder exists and has a Dockerfile: one line naming the setting otherwise."""
    folder = declared.build_context()
    if not (folder / "Dockerfile").is_file():
        what = "does not exist" if not folder.exists() else "has no Dockerfile"
        raise OpsError(f"{rel(declared.env_file)}: APP_BUILD_CONTEXT={declared.spec.project.build_context} {what} "
                       f"({folder}): point it at the project's folder, with a Dockerfile made from "
                       "app/project-template/Dockerfile")


def image_facts(image: str) -> dict:
    out = probe(["docker", "run", "--rm", "--network", "none", "--entrypoint", "python", image,
                 "-m", "tenantstack.image_check", "--json"])
    if out.returncode != 0:
        raise OpsError(f"image {image} cannot report its kombu scripts ({(out.stderr or out.stdout).strip()[-300:]}): "
                       "rebuild it FROM the deployment's base image (app/project-template/Dockerfile)")
    return json.loads(out.stdout.strip().splitlines()[-1])


def check_scripts(t: tenants.Tenant) -> None:
    """Refuse a tenant image whose kombu (or Celery chord) scripts are not the ACL's."""
    image = INSTANCE.tenant_image(t.name)
    facts = image_facts(image)
    # kombu's must be exactly the ACL's (the broker uses all three); Celery's chord scripts may be fewer (Celery 5.6
    # books chords with a pipeline) but never others.
    if facts["kombu_scripts"] != sorted(lua.kombu_scripts()) or \
            not set(facts["celery_scripts"]) <= set(lua.celery_chord_scripts()):
        versions = facts["versions"]
        raise OpsError(f"tenant {t.name}: image {image} runs kombu {versions.get('kombu')} and Celery "
                       f"{versions.get('celery')}, whose Lua scripts are not the ones the Redis ACL allows (this "
                       "checkout's): keep kombu as pinned and Celery within the range of "
                       "requirements/app-constraints.txt in the project's requirements, then `./invoke up` again")


def build_tenants(selected, log=print) -> None:
    """Build each selected tenant's project image (after the bases), then check it; progress per tenant."""
    projects = {t.name: tenants.declared(t.name) for t in selected}  # each env file read once
    for declared in projects.values():
        check_context(declared)
    for t in selected:
        t0 = time.monotonic()
        folder = projects[t.name].build_context()
        log(f"tenant {t.name}: building {INSTANCE.tenant_image(t.name)} from {folder}")
        built = compose.run("build", t.service("web"), profiles=[t.profile], check=False)
        if built.returncode != 0:
            raise OpsError(f"tenant {t.name}: building its image from {folder} failed (exit {built.returncode}; "
                           "the build's own message is above: a requirement outside requirements/"
                           "app-constraints.txt, or a step of the project's Dockerfile): fix the project, then "
                           f"`./invoke up --tenant {t.name}` again")
        check_scripts(t)
        log(f"tenant {t.name}: image built and checked in {time.monotonic() - t0:.1f}s")
