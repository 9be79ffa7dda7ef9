"""`manage.py ensure_admin`: create or update the `admin` superuser from DJANGO_ADMIN_PASSWORD."""
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

ADMIN_USERNAME = "admin"


class Command(BaseCommand):
    help = "Create the admin superuser, or reset its password to DJANGO_ADMIN_PASSWORD. Idempotent."

    def handle(self, *args, **options):
        password = settings.CONFIG.admin_password
        if not password:
            self.stderr.write("DJANGO_ADMIN_PASSWORD is not set: the admin user was left as it is "
                              "(run ./invoke init to generate one)")
            return
        User = get_user_model()
        with transaction.atomic():
            user, created = User.objects.get_or_create(username=ADMIN_USERNAME)
            changed = created or not (user.is_active and user.is_staff and user.is_superuser)
            user.is_active = user.is_staff = user.is_superuser = True
            if created or not user.check_password(password):
                user.set_password(password)
                changed = True
            if changed:
                user.save()
        state = "created" if created else ("updated" if changed else "unchanged")
        self.stdout.write(f"admin user {ADMIN_USERNAME!r} {state} for tenant {settings.TENANT}")
