"""The tenant's beat scheduler: celery's PersistentScheduler plus a liveness file and a single-beat lock.

- Every tick touches DATA_DIR/beat.heartbeat; the beat healthcheck fails when it gets old.
- An exclusive lock on DATA_DIR/beat.lock makes a second beat of the same tenant refuse to start
  (two beats would send every periodic task twice).
- celery.backend_cleanup (one huge DELETE) is not installed: jobs.tasks.cleanup_stale_results
  deletes expired results in batches instead.
"""
import fcntl
import logging
import os
from pathlib import Path

from celery.beat import PersistentScheduler

# Defined beside the healthcheck, which must not import celery (this module does) to read a file's age.
from jobs.healthcheck import heartbeat_path

logger = logging.getLogger(__name__)

LOCK_FILE = "beat.lock"


class AnotherBeatRunning(SystemExit):
    """Raised at startup when the tenant's beat lock is held: the message is the one line shown."""


class HeartbeatScheduler(PersistentScheduler):
    def __init__(self, *args, **kwargs):
        self._lock_fd = None
        super().__init__(*args, **kwargs)

    @property
    def data_dir(self) -> Path:
        return Path(self.schedule_filename).resolve().parent

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
