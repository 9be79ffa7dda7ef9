"""`manage.py copy_sqlite_to_postgres`: the copy step of `./invoke tenant-migrate-db` (tenantstack.sqlite_to_postgres).

Run only with DATABASE=postgres (the connection is the target) in a one-off container of the tenant's image whose
volume holds the SQLite file; the tenant's services are stopped. One line per table on stdout; one error line and
exit 1 (nothing committed) otherwise.
"""
import sqlite3
import sys

import psycopg
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction

from tenantstack import sqlite_to_postgres


class Command(BaseCommand):
    help = ("Copy every table of the tenant's SQLite file into its PostgreSQL database (one transaction, counts "
            "checked).")

    def handle(self, *args, **options):
        if connection.vendor != "postgresql":
            raise CommandError(f"the target must be PostgreSQL (DATABASE=postgres), not {connection.vendor}")
        path = settings.CONFIG.sqlite_path
        if not path.exists():
            raise CommandError(f"{path} does not exist: nothing to copy (is the tenant's volume mounted at /data?)")
        src = sqlite3.connect(str(path), timeout=30, isolation_level=None)  # transactions stated explicitly

        def log(line: str) -> None:
            print(line, flush=True)

        try:
            with transaction.atomic():
                connection.ensure_connection()
                sqlite_to_postgres.copy_all(src, connection.connection, log)
        except sqlite_to_postgres.CopyError as exc:
            raise CommandError(str(exc)) from None
        except sqlite3.Error as exc:
            raise CommandError(f"reading {path} failed: {exc}: nothing was committed") from None
        except psycopg.Error as exc:
            said = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise CommandError(f"PostgreSQL refused the copy: {said}: nothing was committed") from None
        finally:
            src.close()
        sys.stdout.flush()
