"""One error type for operator mistakes: its message is the one line the operator sees."""
import time

from deployment.errors import DeploymentError


class OpsError(DeploymentError):
    """A problem the operator can fix; str(exc) says what is wrong and how to fix it."""


def timed(log):
    """A log function that prefixes each line with the seconds since it was made (progress of long work)."""
    t0 = time.monotonic()
    return lambda message: log(f"[{time.monotonic() - t0:6.1f}s] {message}")
