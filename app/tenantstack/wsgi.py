"""gunicorn's application (`tenantstack.wsgi:application`): the project's WSGI app (TENANT_WSGI_APP).

Django is pointed at the glue's settings first, so the project's wsgi module (which usually setdefaults its own
DJANGO_SETTINGS_MODULE and calls get_wsgi_application) sets up Django with them; /healthz is answered by
tenantstack.middleware before the project sees the request.
"""
import os

from tenantstack import env, project

env.load_or_exit()  # one `config error:` line instead of a worker boot traceback
os.environ["DJANGO_SETTINGS_MODULE"] = "tenantstack.settings"

application = project.attribute("TENANT_WSGI_APP", env.load().spec.project.wsgi_app)
