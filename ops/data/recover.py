"""`./invoke recover`: what an interrupted operation left, found in its journal, finished or rolled back.

Above both the journal (ops/data/journal.py: the mechanism) and the operations that use it: each kind
of entry is handed to its operation's finisher (FINISHERS: a whole restore, one tenant's restore, a move to
PostgreSQL, a rotation, a tenant's removal), any other change is undone by the journal itself, and unfinished
backup folders are swept. The journal never imports an operation, so nothing here is circular.
"""
import subprocess

import redis
from ops.config.paths import INSTANCE
from ops.core.errors import OpsError
from ops.data import backup_format as fmt
from ops.data import journal as jn
from ops.data import migrate_db, restore, tenant_remove, tenant_restore
from ops.data import rotate as rotation
from ops.deploy import containers

# Journal entry kind -> what finishes (or, with rollback, undoes) the operation it records; at most one is found.
FINISHERS = {
    "restore": restore.recover,
    tenant_restore.KIND: tenant_restore.recover,
    "migrate": lambda journal, state, rollback, log: migrate_db.recover(journal, state, log),
    "rotate": lambda journal, state, rollback, log: rotation.recover(journal, state, log),
    tenant_remove.KIND: lambda journal, state, rollback, log: tenant_remove.recover(journal, state, log),
}


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
            for kind, finish in FINISHERS.items():
                state = next((e for e in journal.entries if e["kind"] == kind), None)
                if state is None:
                    continue
                try:
                    lines += finish(journal, state, rollback, log)
                except (redis.RedisError, OSError, subprocess.CalledProcessError) as exc:
                    whose = f" of tenant {state['tenant']}" if state.get("tenant") else ""
                    raise OpsError(f"recovering the interrupted {kind.replace('_', ' ')}{whose} failed "
                                   f"({jn.one_line(exc)}): fix that, then run `./invoke recover` again (each step may "
                                   "be repeated)") from None
            lines += jn.undo_all(journal)
        lines += fmt.sweep_partials()
        return lines
