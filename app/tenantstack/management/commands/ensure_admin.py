"""`manage.py ensure_admin`: create or update the deployment's admin superuser from DJANGO_ADMIN_PASSWORD.

Works with any User model: the admin is looked up by the model's USERNAME_FIELD (`admin`, or
`admin@<tenant>.invalid` when that field is an e-mail address; .invalid never resolves), and the flags the model
has (is_active, is_staff, is_superuser) are set.
"""
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import models, transaction

ADMIN_USERNAME = "admin"


def admin_identifier(user_model, tenant: str) -> str:
    field = user_model._meta.get_field(user_model.USERNAME_FIELD)
    return f"{ADMIN_USERNAME}@{tenant}.invalid" if isinstance(field, models.EmailField) else ADMIN_USERNAME


class Command(BaseCommand):
    help = "Create the admin superuser, or reset its password to DJANGO_ADMIN_PASSWORD. Idempotent."

    def handle(self, *args, **options):
        password = settings.CONFIG.admin_password
        if not password:
            self.stderr.write("DJANGO_ADMIN_PASSWORD is not set: the admin user was left as it is "
                              "(run ./invoke init to generate one)")
            return
        User = get_user_model()
        ident = admin_identifier(User, settings.TENANT)
        flags = [f for f in ("is_active", "is_staff", "is_superuser") if hasattr(User, f)]
        with transaction.atomic():
            user, created = User.objects.get_or_create(**{User.USERNAME_FIELD: ident})
            changed = created or not all(getattr(user, f) for f in flags)
            for flag in flags:
                setattr(user, flag, True)
            if created or not user.check_password(password):
                user.set_password(password)
                changed = True
            if changed:
                user.save()
        state = "created" if created else ("updated" if changed else "unchanged")
        self.stdout.write(f"admin user {ident!r} {state} for tenant {settings.TENANT}")
