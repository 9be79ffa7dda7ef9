"""Settings for `collectstatic` while a tenant's image is built: the project's settings without a tenant.

`tenantstack-finish` (the last step of a tenant's Dockerfile) runs collectstatic with these: the project's own
settings module (build argument TENANT_DJANGO_SETTINGS), placeholder values for the secrets its settings may read
from the environment at import, no database. No running process loads this module; SECRET_KEY signs nothing.
"""
import os

from tenantstack import project

BUILD_SECRET = "collectstatic-at-image-build-time-only"
for _name in ("DJANGO_SECRET_KEY", "REDIS_PASSWORD", "DJANGO_ADMIN_PASSWORD"):
    os.environ.setdefault(_name, BUILD_SECRET)
_project = project.import_module("TENANT_DJANGO_SETTINGS", os.environ["TENANT_DJANGO_SETTINGS"])
globals().update({k: v for k, v in vars(_project).items() if k.isupper()})
SECRET_KEY = BUILD_SECRET
DATABASES = {}
STATIC_ROOT = globals().get("STATIC_ROOT") or "/srv/app/static"
