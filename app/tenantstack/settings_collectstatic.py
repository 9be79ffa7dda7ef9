"""Settings for `manage.py collectstatic` while the image is built: no tenant, no secret, no database.

SECRET_KEY below signs nothing: collectstatic never uses it, and no running process loads this module.
"""
from tenantstack.settings_base import *  # noqa: F403

SECRET_KEY = "collectstatic-at-image-build-time-only"
DATABASES = {}
