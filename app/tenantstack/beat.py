"""The tenant's beat scheduler: the project's own scheduler with a liveness file and a single-beat lock mixed in.

`beat_scheduler` is TenantScheduler; it builds, when beat starts, a class of HeartbeatMixin over the project's
scheduler (celery's PersistentScheduler by default, django-celery-beat's DatabaseScheduler, ...), named by the
`tenantstack_beat_base` setting (tenantstack.celery_config keeps the project's choice there). The mixin only uses
cooperative `super()`, so it composes with any Scheduler subclass.

- Every tick touches DATA_DIR/beat.heartbeat; the beat healthcheck fails when it gets old.
- An exclusive lock on DATA_DIR/beat.lock makes a second beat of the same tenant refuse to start
  (two beats would send every periodic task twice).
- celery.backend_cleanup (one huge DELETE) is not installed: tenantstack.cleanup_stale_results
  deletes expired results in batches instead.
"""
import fcntl
import logging
import os
from pathlib import Path

from celery.beat import PersistentScheduler
from kombu.utils.imports import symbol_by_name

# Defined beside the healthcheck, which must not import celery (this module does) to read a file's age.
from tenantstack.healthcheck import heartbeat_path

logger = logging.getLogger(__name__)

LOCK_FILE = "beat.lock"


class AnotherBeatRunning(SystemExit):
    """Raised at startup when the tenant's beat lock is held: the message is the one line shown."""


class HeartbeatMixin:
    """Goes before a celery Scheduler subclass in the bases: lock, heartbeat, no backend_cleanup entry."""

    def __init__(self, *args, **kwargs):
        self._lock_fd = None
        super().__init__(*args, **kwargs)

    @property
    def data_dir(self) -> Path:
        """Where the schedule file is (DATA_DIR in the containers); DATA_DIR for schedulers without a file."""
        if isinstance(self, PersistentScheduler):
            return Path(self.schedule_filename).resolve().parent
        from tenantstack import env

        return env.load().data_dir

    def setup_schedule(self):
        self._take_lock()
        super().setup_schedule()
        self.touch_heartbeat()

    def _take_lock(self) -> None:
        path = self.data_dir / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise AnotherBeatRunning(f"beat error: another beat already runs for this tenant ({path} is locked): "
                                     f"run exactly one beat per tenant") from None
        self._lock_fd = fd  # held until the process exits

    def close(self):
        try:
            super().close()
        finally:
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # releases the lock
                self._lock_fd = None

    def install_default_entries(self, data):
        """Install nothing: no celery.backend_cleanup (see the module docstring)."""

    def tick(self, *args, **kwargs):
        delay = super().tick(*args, **kwargs)
        self.touch_heartbeat()
        return delay

    def touch_heartbeat(self) -> None:
        path = heartbeat_path(self.data_dir)
        try:
            path.touch()
            os.utime(path)
        except OSError as exc:
            logger.error("cannot touch %s (%s): the beat healthcheck will report beat as stuck", path, exc.strerror)


class HeartbeatScheduler(HeartbeatMixin, PersistentScheduler):
    """celery's default scheduler (a schedule file on the tenant's volume) with the mixin."""


def scheduler_class(base) -> type:
    """HeartbeatMixin over `base` (a class or "module:Class"); the default scheduler gives HeartbeatScheduler."""
    base = symbol_by_name(base)
    if base is PersistentScheduler:
        return HeartbeatScheduler
    if issubclass(base, HeartbeatMixin):
        return base
    return type(f"Tenant{base.__name__}", (HeartbeatMixin, base), {"__module__": __name__})


def TenantScheduler(app, *args, **kwargs):  # noqa: N802 - named like the class Celery expects in beat_scheduler
    """What `beat_scheduler` names: the project's scheduler with the mixin, built once Django's apps are ready."""
    from tenantstack.celery_config import BEAT_BASE_SETTING

    return scheduler_class(app.conf.get(BEAT_BASE_SETTING) or PersistentScheduler)(app, *args, **kwargs)
