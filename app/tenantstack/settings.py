"""DJANGO_SETTINGS_MODULE of every tenant process: the project's own settings, then what the deployment owns.

Importing this module validates the environment (tenantstack.env): a bad value stops web, worker, beat or
manage.py with one `config error: ...` line. Then the secret files are put into this process's environment
(never the container's), so a project whose settings read `os.environ["DJANGO_SECRET_KEY"]` at import works,
and the project's settings module (TENANT_DJANGO_SETTINGS) is imported and copied here. Last, the settings the
deployment owns are overridden (tenantstack.overrides says which and why) and the list of what was replaced is
logged once, on stderr, so nobody wonders why their DEBUG=True does nothing.
"""
from tenantstack import env, overrides, project

CONFIG = env.load_or_exit()
env.export_secrets(CONFIG)
_project = project.import_module("TENANT_DJANGO_SETTINGS", CONFIG.spec.project.django_settings)
globals().update({k: v for k, v in vars(_project).items() if k.isupper()})
TENANT = CONFIG.tenant
overrides.apply(globals(), CONFIG)
