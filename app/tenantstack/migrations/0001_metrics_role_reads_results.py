"""On PostgreSQL: let the tenant's metrics exporter read the task result table, and nothing else.

The exporter connects as tenant_<t>_metrics (deployment/postgres.py creates it: LOGIN, read-only transactions, CONNECT
on this database only). A table's privileges can only be granted by its owner, the tenant's role, which is who runs
the migrations at every start (after ops created the metrics role), and only once the table exists: hence a migration
after django_celery_results' last one. SQLite (no roles) and a server without that role (the tenant's database
provisioned by something else) are left alone. Reversing it revokes the grant.
"""
from django.conf import settings
from django.db import migrations

from deployment import naming

RESULT_TABLE = "django_celery_results_taskresult"


def _metrics_role(schema_editor) -> str | None:
    """The tenant's metrics role when this database is PostgreSQL and the role exists there, else None."""
    connection = schema_editor.connection
    tenant = getattr(settings, "TENANT", "")  # the glue's config (tenantstack.settings)
    if connection.vendor != "postgresql" or not naming.is_valid_tenant_name(tenant):
        return None
    role = naming.database_metrics_role(tenant)
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %s", [role])
        return role if cursor.fetchone() else None


def grant(apps, schema_editor):
    role = _metrics_role(schema_editor)
    if role:  # a plain identifier (naming: tenant names are [a-z][a-z0-9]*), so it needs no quoting
        schema_editor.execute(f"GRANT SELECT ON {RESULT_TABLE} TO {role}")


def revoke(apps, schema_editor):
    role = _metrics_role(schema_editor)
    if role:
        schema_editor.execute(f"REVOKE SELECT ON {RESULT_TABLE} FROM {role}")


class Migration(migrations.Migration):
    dependencies = [("django_celery_results", "0014_alter_taskresult_status")]
    operations = [migrations.RunPython(grant, revoke, elidable=False)]
