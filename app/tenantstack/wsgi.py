"""WSGI entry point for gunicorn (`tenantstack.wsgi:application`)."""
import os

from tenantstack import env

env.load_or_exit()  # one `config error:` line instead of a worker boot traceback
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tenantstack.settings")

from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()
