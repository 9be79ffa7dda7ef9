"""Operations that survive being interrupted: a write-ahead journal of what they change on the live deployment.

Every multi-step operation (backup, restore, recover) holds the instance's lock (`state/lock`, an
flock the kernel releases when its holder dies, even by SIGKILL) and keeps a journal,
`<instance home>/state/journal.json`. Any change to the live Redis or to the services is recorded
there BEFORE it is made, and forgotten once it was undone normally:

  config   CONFIG SET of a setting: its original value, and Redis' run_id at that moment
  pause    CLIENT PAUSE WRITE (it also expires by itself after backup.PAUSE_MS)
  partial  a folder being written (backups/.<stamp>.partial, backups/.pre-restore-<stamp>.partial)
  restore  the step a restore reached (down to each PostgreSQL tenant's database being restored), its
           backup, the services it stopped, its pre-restore copy (with a pg_dump of each such database)
  migrate  the step a tenant's move from SQLite to PostgreSQL reached (tenant-migrate-db), the services it stopped
  rotate   the step a tenant's rotation reached (./invoke rotate, ops/data/rotate.py), the SHA-256 digests of its
           old and new Redis passwords, the ids of the connections open before it began
  tenant_remove  the step a tenant's removal reached (tenant-remove), its archive: recover finishes it

A journal left behind by a killed process is told from one in use by the lock. The next task
(`at_task_start()`, called by tasks.py's wrapper: a cheap file check when nothing is left) undoes what
a backup left, one line per change: settings put back, pauses lifted, unfinished folders removed. A
restore's journal is acted upon only by `./invoke recover` (finish it, or `--rollback`): until then
`up`, `backup`, `restore`, `bgsave` and `flush-results` refuse with one line saying what to run. So is a
migration's (ops/data/migrate_db.py): recover rolls it back (the tenant back on SQLite, its PostgreSQL database
dropped, its services started) or, once the env file says DATABASE=postgres, finishes it.

An original value is never lost: an operation refuses to start while an older journal is still there
(it could not be undone yet), so a second run can never record an already-changed value as the
original. A setting whose Redis restarted since (another run_id) or is not running is back to the
value of redis.conf (CONFIG SET is never persisted here), so there is nothing to put back.

Test-only fault injection: TENANTSTACK_FAULT_AT=<step> makes an operation SIGKILL itself when it
reaches that step (fault_point()); with TENANTSTACK_FAULT_ACTION=stop it SIGSTOPs itself instead, so a
test can do something (fill the disk, kill Redis) and then SIGCONT it. Operators never set these.
"""
import contextlib
import datetime as dt
import errno
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import redis
from ops.config.paths import INSTANCE, STATE
from ops.core.errors import OpsError
from ops.core.run import probe
from ops.deploy import containers, redis_admin

JOURNAL = STATE / "journal.json"
LOCK = STATE / "lock"
FAULT_VAR = "TENANTSTACK_FAULT_AT"
FAULT_ACTION_VAR = "TENANTSTACK_FAULT_ACTION"
# Tasks that would act on a half-restored deployment: they refuse until `recover` ran.
REFUSE_WHILE_RESTORE = {"up", "backup", "restore", "bgsave", "flush_results", "tenant_add", "bench",
                        "backup_schedule"}
# Tasks that never look: `test` works on an instance of its own, `recover` does the job itself, the
# others are about instances, not this one's data.
NOT_CHECKED = {"test", "recover", "instances", "instance_remove"}


_FAULTED = set()  # steps already faulted in this process
_FAULT_LOCK = threading.Lock()


def fault_point(step: str) -> None:
    """Test-only: die (or stop) here when TENANTSTACK_FAULT_AT names this step; once per process, as threads (the
    PostgreSQL dumps) may reach the same step after the test continued the stopped process."""
    if os.environ.get(FAULT_VAR) != step:
        return
    with _FAULT_LOCK:
        if step in _FAULTED:
            return
        _FAULTED.add(step)
    action = os.environ.get(FAULT_ACTION_VAR, "kill")
    print(f"fault: {step} ({action}, test-only {FAULT_VAR})", flush=True)
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGSTOP if action == "stop" else signal.SIGKILL)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__


def failure_line(exc: BaseException, where: Path, what: str = "backup") -> str:
    """One line for what stopped an operation half-way while it wrote `where` (a backup, a restore's copy)."""
    if isinstance(exc, OSError) and not isinstance(exc, redis.RedisError):
        place = exc.filename or where
        if exc.errno == errno.ENOSPC:
            return f"{place}: no space left on the device: free space in {where.parent} and retry"
        return f"{place}: {exc.strerror or one_line(exc)}"
    if isinstance(exc, subprocess.CalledProcessError):
        return f"`{' '.join(map(str, exc.cmd[-3:]))}` failed with exit code {exc.returncode}"
    if isinstance(exc, redis.RedisError):
        return f"Redis went away during the {what} ({one_line(exc)}): check `./invoke ps`, then retry"
    return one_line(exc)


# ---- the lock ----------------------------------------------------------------------------------
def _try_lock(what: str) -> int | None:
    """The instance's lock, or None when another live process holds it."""
    STATE.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, f"{what} (pid {os.getpid()}, since {_now()})\n".encode())
    return fd


def _holder() -> str:
    try:
        return LOCK.read_text().strip() or "another operation"
    except OSError:
        return "another operation"


@contextlib.contextmanager
def locked(what: str):
    """Hold the instance's lock for the duration; refuse in one line when another operation holds it."""
    fd = _try_lock(what)
    if fd is None:
        raise OpsError(f"instance {INSTANCE.name} is busy: {_holder()} is running; wait for it to finish, then retry")
    try:
        yield
    finally:
        os.close(fd)  # releases the flock


# ---- the journal -------------------------------------------------------------------------------
class Journal:
    """The journal of one operation: each change is written (and fsynced) before it is made."""

    def __init__(self, doc: dict):
        self.doc = doc

    @property
    def entries(self) -> list:
        return self.doc["entries"]

    def _write(self) -> None:
        tmp = JOURNAL.with_suffix(".tmp")
        with open(tmp, "w") as fh:
            fh.write(json.dumps(self.doc, indent=1) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, JOURNAL)  # atomic: a reader sees the old journal or the new one, never half
        dirfd = os.open(STATE, os.O_RDONLY)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)

    def record(self, kind: str, **data) -> dict:
        """Record a change about to be made; returns the entry (to update or forget)."""
        entry = {"kind": kind, "at": _now(), **data}
        self.entries.append(entry)
        self._write()
        return entry

    def update(self, entry: dict, **data) -> None:
        entry.update(data)
        self._write()

    def forget(self, entry: dict) -> None:
        """The change was undone (or the step completed): it needs no recovery any more."""
        if entry in self.entries:
            self.entries.remove(entry)
            self._write()

    def undo(self, entry: dict) -> str:
        """Undo one recorded change now and forget it; returns what was done (one line)."""
        line = UNDO[entry["kind"]](entry, self.doc["op"])
        self.forget(entry)
        return line

    def close(self) -> None:
        JOURNAL.unlink(missing_ok=True)


def load() -> dict | None:
    try:
        doc = json.loads(JOURNAL.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        raise OpsError(f"{JOURNAL} is unreadable: look at it, then remove it and run `./invoke recover`") from None
    return doc


@contextlib.contextmanager
def operation(op: str):
    """Lock the instance and open a journal for `op`; refuse while an older journal is still there.

    On the way out the journal is removed when nothing is left in it; whatever could not be undone
    stays recorded for the next task or `./invoke recover`.
    """
    with locked(op):
        left = load()
        if left is not None:
            raise OpsError(f"an interrupted {left['op']} (pid {left.get('pid')}, {left.get('started')}) left changes "
                           f"that are not undone yet: run `./invoke recover` first")
        journal = Journal({"op": op, "pid": os.getpid(), "started": _now(), "entries": []})
        journal._write()
        try:
            yield journal
        finally:
            if not journal.entries:
                journal.close()


# ---- undoing what an operation recorded --------------------------------------------------------
def _live_redis(entry: dict):
    """(client, None) when the Redis the entry changed still runs; (None, why there is nothing to undo).

    Redis answering is the ground truth. When it does not, only the engine saying its container is
    stopped or gone lets the entry go: an engine that does not answer (its API service down while
    containers run on) says nothing, and the entry stays for a later try.
    """
    client = redis_admin.operator(timeout=10)
    try:
        run_id = client.info("server")["run_id"]
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        state = probe(["docker", "inspect", "--format", "{{.State.Running}}", containers.name("redis")],
                      what="asking the engine about Redis", timeout=30)
        if state.returncode == 0 and state.stdout.strip() == "false":
            return None, "Redis is not running, and it starts with redis.conf's values"
        if state.returncode != 0 and "no such" in (state.stderr or "").lower():
            return None, "Redis' container is gone, and a new one starts with redis.conf's values"
        raise OpsError(f"Redis does not answer on 127.0.0.1:{INSTANCE.redis_port} and the engine cannot say whether "
                       "it runs: start the engine (`./invoke engine`) and Redis (`./invoke up`), "
                       "then `./invoke recover`") from None
    if run_id != entry["run_id"]:
        return None, "Redis restarted since, so it runs with redis.conf's values"
    return client, None


def _undo_config(entry: dict, op: str) -> str:
    client, why = _live_redis(entry)
    if client is None:
        return f"{entry['name']}: nothing to put back ({why})"
    redis_admin.config_set(client, entry["name"], entry["original"])
    return f"set {entry['name']} back to {entry['original']} (changed by the {op})"


def _undo_pause(entry: dict, op: str) -> str:
    client, why = _live_redis(entry)
    if client is None:
        return f"client writes: nothing to unpause ({why})"
    client.execute_command("CLIENT", "UNPAUSE")
    return f"client writes unpaused (paused by the {op})"


def _undo_partial(entry: dict, op: str) -> str:
    path = Path(entry["path"])
    if not path.exists():
        return f"unfinished folder {path.name}: already gone"
    shutil.rmtree(path)
    return f"removed the unfinished folder {path} (left by the {op})"


def _undo_restore(entry: dict, op: str) -> str:
    raise OpsError("a restore is undone only by `./invoke recover`")


def _undo_migrate(entry: dict, op: str) -> str:
    # Starting services and dropping a database is recover's (ops/data/migrate_db.recover), never a task's start.
    raise OpsError(f"a database migration of tenant {entry.get('tenant')} is finished or rolled back only by "
                   "`./invoke recover`")


def _undo_rotate(entry: dict, op: str) -> str:
    # Its new secrets are already on disk: only recover (ops/data/rotate.recover) finishes it, never a task's start.
    raise OpsError(f"a rotation of tenant {entry.get('tenant')} is finished only by `./invoke recover`")


def _undo_tenant_restore(entry: dict, op: str) -> str:
    raise OpsError(f"a restore of tenant {entry.get('tenant')} is finished or rolled back only by `./invoke recover`")


def _undo_tenant_remove(entry: dict, op: str) -> str:
    # A half-removed tenant is finished by recover (ops/data/tenant_remove.recover), never by a task's start.
    raise OpsError(f"a removal of tenant {entry.get('tenant')} is finished only by `./invoke recover`")


UNDO = {"config": _undo_config, "pause": _undo_pause, "partial": _undo_partial, "restore": _undo_restore,
        "migrate": _undo_migrate, "rotate": _undo_rotate, "tenant_restore": _undo_tenant_restore,
        "tenant_remove": _undo_tenant_remove}


def undo_all(journal: Journal) -> list[str]:
    """Undo every change of a leftover (non-restore) journal, newest first; remove it when all are undone."""
    lines = []
    for entry in reversed(list(journal.entries)):
        try:
            lines.append(journal.undo(entry))
        except (redis.RedisError, OSError) as exc:
            raise OpsError(f"could not undo what the interrupted {journal.doc['op']} changed ({entry['kind']}: "
                           f"{one_line(exc)}): fix that, then run `./invoke recover`") from None
    journal.close()
    return lines


def describe_restore(doc: dict) -> str:
    state = next((e for e in doc["entries"] if e["kind"] == "restore"), {})
    backup = os.path.basename(state.get("backup", "?"))
    return (f"a restore of backup {backup} was interrupted while {state.get('step', '?')} (pid {doc.get('pid')}, "
            f"{doc.get('started')}): Redis may hold half-restored data; run `./invoke recover` to finish it "
            f"(or `./invoke recover --rollback` to go back to the data before)")


def describe_migrate(doc: dict, state: dict) -> str:
    return (f"a database migration of tenant {state.get('tenant', '?')} was interrupted while {state.get('step', '?')} "
            f"(pid {doc.get('pid')}, {doc.get('started')}): run `./invoke recover` to roll it back (the tenant back on "
            "SQLite) or finish it (when its env file already says DATABASE=postgres)")


def describe_tenant_restore(doc: dict, state: dict) -> str:
    return (f"a restore of tenant {state.get('tenant', '?')} from backup {os.path.basename(state.get('backup', '?'))} "
            f"was interrupted while {state.get('step', '?')} (pid {doc.get('pid')}, {doc.get('started')}): run "
            "`./invoke recover` to finish it (or `./invoke recover --rollback` to put its data from before back)")


def describe_tenant_remove(doc: dict, state: dict) -> str:
    return (f"a removal of tenant {state.get('tenant', '?')} was interrupted at step {state.get('step', '?')} "
            f"(pid {doc.get('pid')}, {doc.get('started')}): run `./invoke recover` to finish it (its archive "
            f"{os.path.basename(state.get('archive') or '?')} holds its data)")


def _held_for_recover(doc: dict) -> str | None:
    """What only `./invoke recover` may act on in a leftover journal (a restore, a migration), in one line; or None."""
    if doc["op"] == "restore" or any(e["kind"] == "restore" for e in doc["entries"]):
        return describe_restore(doc)
    describers = (("tenant_restore", describe_tenant_restore), ("migrate", describe_migrate),
                  ("rotate", describe_rotate), ("tenant_remove", describe_tenant_remove))
    for kind, describe in describers:
        entry = next((e for e in doc["entries"] if e["kind"] == kind), None)
        if entry is not None:
            return describe(doc, entry)
    return None


def describe_rotate(doc: dict, state: dict) -> str:
    # Until it is finished the ACL accepts the old password beside the new: `up` (which renders the ACL) must wait.
    return (f"a rotation of tenant {state.get('tenant', '?')}'s secrets was interrupted while {state.get('step', '?')} "
            f"(pid {doc.get('pid')}, {doc.get('started')}): run `./invoke recover` to finish it")


def at_task_start(task: str, log=print) -> None:
    """Cheap check at the start of every task: undo what a killed backup left; refuse on a half-restored Redis."""
    if task in NOT_CHECKED or not JOURNAL.exists():
        return
    fd = _try_lock(f"recovery check of {task}")
    if fd is None:
        return  # the journal belongs to an operation still running: not ours to touch
    try:
        doc = load()
        if doc is None:
            return
        held = _held_for_recover(doc)
        if held is not None:
            if task in REFUSE_WHILE_RESTORE:
                raise OpsError(held)
            return
        log(f"recover: an interrupted {doc['op']} (pid {doc.get('pid')}, {doc.get('started')}) left changes; "
            "undoing them")
        for line in containers.sweep_orphan_jobs():
            log(f"recover: {line}")
        try:
            for line in undo_all(Journal(doc)):
                log(f"recover: {line}")
        except OpsError as exc:
            # Never block the task: `up` may be what brings Redis back (after a reboot), and a new
            # backup refuses by itself while the journal is there, so no original can be lost.
            log(f"recover: not yet: {exc}")
    finally:
        os.close(fd)
