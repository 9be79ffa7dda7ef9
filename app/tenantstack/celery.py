"""The tenant's Celery app: the project's own (TENANT_CELERY_APP), configured for this deployment.

`celery -A tenantstack.celery worker|beat|inspect|control` finds `app` here. Importing this module validates
the configuration first (one `config error: ...` line instead of a traceback), points Django at the glue's
settings (tenantstack.settings: the project's settings, then the deployment's), imports the project's app and
updates its configuration with what the deployment owns (tenantstack.celery_config: broker, TLS, key prefix,
queues, serializers, acknowledgements, limits, result backend, beat scheduler). `conf.update` takes precedence
over the project's `config_from_object(...)`, and the project's own task routes, its beat schedule (merged with
the glue's entries) and its beat scheduler (wrapped by tenantstack.beat's mixin) are kept.
"""
import os
import sys

from tenantstack import env, project
from tenantstack.celery_config import GLUE_TASKS_MODULE, celery_settings, replaced_settings, with_namespace
from tenantstack.overrides import ROLE_VAR

# Variables Celery's configuration prefers over every setting (celery/app/utils.py): an operator's extra line in the
# env file must not point the tenant at another broker or backend.
OWNED_ENVIRONMENT = ("CELERY_BROKER_URL", "CELERY_BROKER_READ_URL", "CELERY_BROKER_WRITE_URL", "CELERY_RESULT_BACKEND")

os.environ["DJANGO_SETTINGS_MODULE"] = "tenantstack.settings"  # before the project's module can setdefault its own
_config = env.load_or_exit()
env.export_secrets(_config)
for _name in OWNED_ENVIRONMENT:  # Celery reads these before any setting: the deployment's broker and backend win
    os.environ.pop(_name, None)

import tenantstack.published  # noqa: E402,F401 - stamps every published task with its publish time (for the metrics)
from tenantstack.liveness import BrokerPing  # noqa: E402

app = project.attribute("TENANT_CELERY_APP", _config.spec.project.celery_app)
os.environ["DJANGO_SETTINGS_MODULE"] = "tenantstack.settings"  # a project module may have set its own
try:
    _owned = celery_settings(_config, app.conf)
except ValueError as exc:  # a clash with the project's own configuration: one line, like every config error
    print(f"config error: {exc}", file=sys.stderr, flush=True)
    raise SystemExit(env.EXIT_CONFIG) from None
_replaced = replaced_settings(app.conf, _owned)
app.conf.update(with_namespace(app, _owned))
app.conf.include = [*app.conf.include, *([GLUE_TASKS_MODULE] if GLUE_TASKS_MODULE not in app.conf.include else [])]
app.steps["consumer"].add(BrokerPing)  # the worker's liveness file, read by its healthcheck
if os.environ.get(ROLE_VAR):  # the long-running roles log it once; a celery command's output stays its own
    print(f"tenantstack: tenant {_config.tenant} ({os.environ[ROLE_VAR]}): Celery app "
          f"{_config.spec.project.celery_app}: "
          f"the deployment replaced {', '.join(_replaced) or 'nothing'} of its settings (README, Bring your own "
          "project)", file=sys.stderr, flush=True)
