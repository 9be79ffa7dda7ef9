"""What the test suite needs on the host besides the engine.

redis-server: Debian's 7.0 with TLS, for the fast tests that run the real redis.conf without a container.
              Installed with package service starts refused (ops/engine/apt.py), so Debian's own instance never
              runs; nothing is ever killed by name.
chromium:     Debian's browser, driven by Playwright in the redis-commander UI test (Playwright's own
              browser download is never used: no such download is possible here).
"""
import os

from ops.core.errors import OpsError
from ops.engine import apt

CHROMIUM = "/usr/bin/chromium"
PACKAGES = ["redis-server", "redis-tools", "chromium", "git"]


def ensure_host_packages() -> None:
    todo = apt.missing(PACKAGES)
    if not todo:
        return
    if os.geteuid() != 0:
        raise OpsError(f"{', '.join(todo)} missing for the tests: run `sudo apt-get install -y {' '.join(todo)}`")
    apt.install(todo, log=lambda m: print(m, flush=True), start_services=False)
