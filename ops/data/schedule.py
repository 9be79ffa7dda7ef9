"""`./invoke backup-schedule`: the backup policy of envs/backup.env, run once (--once, for cron) or every BACKUP_EVERY.

One run, each step on its own so one failing never stops the next:
  1. a whole verified backup (backup.create; it prunes whole backups to BACKUP_KEEP_WHOLE under the instance's lock);
  2. a verified backup of each tenant of BACKUP_TENANTS (ops/data/tenant_backup.create), then every tenant's own
     backups pruned to BACKUP_KEEP_TENANT (ops/data/retention.py, under the lock; archives never);
  3. BACKUP_COPY_COMMAND on each backup that verified in this run.
The run ends with one line, printed and appended to backups/schedule.log: what it made, removed and copied, or
what failed. Any failure (a backup, the copy) makes the run fail (exit non-zero); a failed copy never removes or
marks the local backup, which verified before it was copied.

The copy command is split into words like a shell would (shlex) and run without a shell, {path} and {name} replaced
inside each word: the substituted path is always exactly one argument whatever it holds, so nothing in it is ever
read as shell syntax, and the operator's own quoting is kept. A pipeline or redirection is written explicitly as
`sh -c '... "$1"' sh {path}`. It runs with backups/ as its working directory, its output captured (one line of it
logged), stopped after BACKUP_COPY_TIMEOUT_SECONDS. COPY_STATE records the last outcome and the last success,
which ops/monitor/textfile.py turns into the BackupCopyFailed alert's metrics.
"""
import contextlib
import datetime as dt
import json
import os
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path

from ops.config import backup_policy, tenants
from ops.config.envfile import rel
from ops.config.paths import BACKUPS, INSTANCE, STATE
from ops.core.errors import OpsError
from ops.core.run import probe
from ops.data import backup, retention, tenant_backup
from ops.data import journal as jn

LOG = BACKUPS / "schedule.log"
COPY_STATE = STATE / "last-copy.json"


@dataclass
class Run:
    """What one run did: its parts for the summary line, and whether anything failed."""
    made: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def line(self, seconds: float) -> str:
        parts = [*self.notes, *self.failures]
        return f"{'ok' if self.ok else 'FAILED'} in {seconds:.1f}s: {'; '.join(parts) or 'nothing to do'}"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def backup_name(path: Path) -> str:
    """The backup's name under backups/: 20260101T020000Z or tenant-b/20260101T020000Z ({name} of the command)."""
    return path.relative_to(BACKUPS).as_posix()


def copy_argv(command: str, path: Path) -> list[str]:
    """The copy command's words with {path} and {name} replaced in each (see the module's docstring for why)."""
    return [w.replace("{path}", str(path)).replace("{name}", backup_name(path)) for w in shlex.split(command)]


def _said(proc) -> str:
    lines = [line.strip() for line in f"{proc.stdout or ''}\n{proc.stderr or ''}".splitlines() if line.strip()]
    return " ".join(lines[-1].split())[:200] if lines else "no output"


def _record_copy(status: str, name: str, detail: str) -> None:
    state = {}
    with contextlib.suppress(OSError, ValueError):
        state = json.loads(COPY_STATE.read_text())
    state = {"status": status, "backup": name, "detail": detail, "at": _now(),
             "last_success": _now() if status == "ok" else (state or {}).get("last_success")}
    STATE.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = COPY_STATE.with_name(COPY_STATE.name + ".tmp")
    tmp.write_text(json.dumps(state) + "\n")
    tmp.replace(COPY_STATE)


def copy(policy: backup_policy.Policy, path: Path, log=print) -> tuple[bool, str]:
    """Run the copy command on one verified backup; (succeeded, one line saying how)."""
    name = backup_name(path)
    argv = copy_argv(policy.copy_command, path)
    log(f"backup-schedule: copying {name}: {shlex.join(argv)}")
    t0 = time.monotonic()
    try:
        proc = probe(argv, what="BACKUP_COPY_COMMAND", timeout=policy.copy_timeout, cwd=BACKUPS)
    except OpsError as exc:  # not installed, or still running after the timeout (then it was killed)
        ok, line = False, f"copy of {name} failed: {jn.one_line(exc)}"
    else:
        ok = proc.returncode == 0
        line = (f"copy of {name} {'ok' if ok else 'failed'} in {time.monotonic() - t0:.1f}s "
                f"(exit {proc.returncode}: {_said(proc)})")
    _record_copy("ok" if ok else "failed", name, line)
    log(f"backup-schedule: {line}")
    return ok, line


def _tenants_of(policy: backup_policy.Policy) -> list[str]:
    return tenants.known_names() if "all" in policy.tenants else list(dict.fromkeys(policy.tenants))


def run_once(policy: backup_policy.Policy, log=print) -> Run:
    """One run of the policy (see the module's docstring); never raises for a failed step, reports it."""
    run = Run()
    before = retention.complete(BACKUPS)
    try:
        whole = backup.create(keep=policy.keep_whole, log=log)  # prunes whole backups under its lock
        run.made.append(whole)
        run.notes.append(f"whole {backup_name(whole)}")
    except OpsError as exc:
        run.failures.append(f"whole backup failed: {jn.one_line(exc)}")
    pruned = [p for p in before if not p.exists()]
    known = set(tenants.known_names())
    for name in _tenants_of(policy):
        if name not in known:  # a removed tenant still listed: said each run, the other backups still taken
            run.failures.append(f"tenant {name} of BACKUP_TENANTS is not a tenant of this instance: remove it from "
                                f"{rel(INSTANCE.backup_env)}")
        else:
            try:
                made = tenant_backup.create(name, log=log)
                run.made.append(made)
                run.notes.append(backup_name(made))
            except OpsError as exc:
                run.failures.append(f"tenant {name}'s backup failed: {jn.one_line(exc)}")
    try:
        with jn.locked("backup retention"):
            pruned += retention.prune_tenants(policy.keep_tenant, log)
    except (OpsError, OSError) as exc:
        run.failures.append(f"retention of tenant backups failed: {jn.one_line(exc)}")
    if pruned:
        run.notes.append(f"removed {', '.join(backup_name(p) for p in pruned)}")
    if policy.copy_command:
        for path in run.made:
            ok, line = copy(policy, path, log)
            (run.notes if ok else run.failures).append(line)
    return run


def append_log(line: str) -> None:
    """One line per run in backups/schedule.log (private like the backups it describes)."""
    BACKUPS.mkdir(parents=True, exist_ok=True)
    fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a") as fh:
        fh.write(line + "\n")


def once(log=print, after_run=None) -> Run:
    """Load the policy, run it, log its one line, call after_run() (the metrics); the run, or OpsError when the
    policy itself is invalid (then nothing ran)."""
    t0 = time.monotonic()
    try:
        policy = backup_policy.load()
    except OpsError as exc:
        append_log(f"{_now()} backup-schedule: FAILED: {jn.one_line(exc)}")
        raise
    log(f"backup-schedule: policy from {policy.source}: keep {policy.keep_whole} whole, {policy.keep_tenant} per "
        f"tenant; tenants {','.join(policy.tenants) or 'none'}; copy {'on' if policy.copy_command else 'off'}")
    run = run_once(policy, log)
    line = f"{_now()} backup-schedule: {run.line(time.monotonic() - t0)}"
    append_log(line)
    if after_run is not None:
        after_run()
    log(line)
    return run


def _duration(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def forever(log=print, after_run=None, every: int | None = None) -> None:
    """Run the policy now and then every BACKUP_EVERY (read again each time; `every` overrides it), measured from
    each run's start; a failed run is logged and the loop goes on. Refuses at once when the policy is invalid."""
    interval = every or backup_policy.load().every_seconds  # a bad policy is said now, while the operator looks
    while True:
        started = time.time()
        try:
            once(log, after_run)
        except OpsError as exc:  # the policy became invalid: logged, retried at the next interval
            log(f"backup-schedule: {exc}")
        with contextlib.suppress(OpsError):  # an edit counts from the next run; a bad one keeps the last interval
            interval = every or backup_policy.load().every_seconds
        next_at = max(started + interval, time.time())
        log(f"backup-schedule: next run at {dt.datetime.fromtimestamp(next_at, dt.UTC).isoformat(timespec='seconds')}"
            f" (every {_duration(interval)})")
        time.sleep(max(0.0, next_at - time.time()))
