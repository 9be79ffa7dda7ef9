"""`manage.py export_db`: write a consistent copy of the tenant database to stdout (used by `invoke backup`).

SQLite: the online backup API into a temporary file on the data volume (consistent while workers write),
then streamed. PostgreSQL: pg_dump in custom format, when the image has it.
"""
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile

from django.core.management.base import BaseCommand, CommandError
from django.db import connection


class Command(BaseCommand):
    help = "Write a consistent copy of this tenant's database to stdout (SQLite backup API or pg_dump)."

    def handle(self, *args, **options):
        settings = connection.settings_dict
        if connection.vendor == "sqlite":
            self._sqlite(str(settings["NAME"]))
        elif connection.vendor == "postgresql":
            self._postgres(settings)
        else:
            raise CommandError(f"export_db supports SQLite and PostgreSQL, not {connection.vendor}")

    def _sqlite(self, path: str) -> None:
        directory = os.path.dirname(path)
        fd, tmp = tempfile.mkstemp(prefix=".export-", suffix=".sqlite3", dir=directory)
        os.close(fd)
        try:
            src = sqlite3.connect(path, timeout=30)
            dst = sqlite3.connect(tmp)
            with dst:
                src.backup(dst, pages=4096)
            dst.close()
            src.close()
            with open(tmp, "rb") as fh:
                shutil.copyfileobj(fh, sys.stdout.buffer, 1 << 20)
            sys.stdout.buffer.flush()
        finally:
            os.unlink(tmp)

    def _postgres(self, settings: dict) -> None:
        if not shutil.which("pg_dump"):
            raise CommandError("pg_dump is not in this image: install postgresql-client in app/Dockerfile")
        env = {**os.environ, "PGPASSWORD": settings.get("PASSWORD") or ""}
        argv = ["pg_dump", "--format=custom", "--no-owner", "-h", settings.get("HOST") or "localhost",
                "-p", str(settings.get("PORT") or 5432), "-U", settings.get("USER") or "", settings["NAME"]]
        if subprocess.run(argv, env=env, stdout=sys.stdout.buffer, check=False).returncode != 0:
            raise CommandError("pg_dump failed (see its message above)")
