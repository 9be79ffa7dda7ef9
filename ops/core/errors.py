"""One error type for operator mistakes: its message is the one line the operator sees.

It is the model's own error type under the name the ops code uses, so a reader of configuration
(ops/config, importing nothing of ops) and a task raise the very same class.
"""
import time

from deployment.errors import DeploymentError as OpsError

__all__ = ["OpsError", "timed"]


def timed(log):
    """A log function that prefixes each line with the seconds since it was made (progress of long work)."""
    t0 = time.monotonic()
    return lambda message: log(f"[{time.monotonic() - t0:6.1f}s] {message}")
