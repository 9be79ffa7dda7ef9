"""`./invoke recover`: what an interrupted operation left, found in its journal, finished or rolled back.

Above both the journal (ops/data/journal.py: the mechanism) and the operations that use it: a restore's
journal is handed to restore.recover(), one tenant's restore to tenant_restore.recover(), a tenant's interrupted
move to PostgreSQL to migrate_db.recover(), any other change is undone by the journal itself, and unfinished
backup folders are swept. The journal never imports an operation, so nothing here is circular.
"""
import subprocess

import redis
from ops.config.paths import INSTANCE
from ops.core.errors import OpsError
from ops.data import backup_format as fmt
from ops.data import journal as jn
from ops.data import migrate_db, restore, tenant_restore
from ops.deploy import containers


def recover(rollback: bool = False, log=print) -> list[str]:
    """`./invoke recover`: finish (or roll back) an interrupted operation; returns what was found and done."""
    with jn.locked("recover"):
        doc = jn.load()
        lines = containers.sweep_orphan_jobs()  # first: a killed restore's copy job may still be writing
        if doc is None:
            lines.append(f"no interrupted operation on instance {INSTANCE.name}")
        else:
            journal = jn.Journal(doc)
            lines.append(f"found an interrupted {doc['op']} (pid {doc.get('pid')}, {doc.get('started')}) "
                         f"with {len(doc['entries'])} change(s) recorded")
            state = next((e for e in journal.entries if e["kind"] == "restore"), None)
            if state is not None:
                try:
                    lines += restore.recover(journal, state, rollback, log)
                except (redis.RedisError, OSError, subprocess.CalledProcessError) as exc:
                    raise OpsError(f"recovering the restore failed ({jn.one_line(exc)}): fix that, then run "
                                   "`./invoke recover` again (each step may be repeated)") from None
            restoring = next((e for e in journal.entries if e["kind"] == tenant_restore.KIND), None)
            if restoring is not None:
                try:
                    lines += tenant_restore.recover(journal, restoring, rollback, log)
                except (redis.RedisError, OSError, subprocess.CalledProcessError) as exc:
                    raise OpsError(f"recovering tenant {restoring.get('tenant')}'s restore failed "
                                   f"({jn.one_line(exc)}): fix that, then run `./invoke recover` again") from None
            moving = next((e for e in journal.entries if e["kind"] == "migrate"), None)
            if moving is not None:
                lines += migrate_db.recover(journal, moving, log)
            lines += jn.undo_all(journal)
        lines += fmt.sweep_partials()
        return lines
