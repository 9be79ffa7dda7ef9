"""What the test suite needs on the host besides the engine.

redis-server: Debian's 7.0 with TLS, for the fast tests that run the real redis.conf without a container.
              Installed with package service starts refused (ops/engine/apt.py), so Debian's own instance never
              runs; nothing is ever killed by name.
chromium:     Debian's browser, driven by Playwright in the redis-commander and Prometheus UI tests (Playwright's
              own browser download is never used: no such download is possible here).
prometheus, prometheus-alertmanager, prometheus-redis-exporter: Debian's, for promtool (`promtool test rules`
              on the alert rules), amtool (the Alertmanager configuration) and the exporter's ACL test against the
              fast test server; their services are kept from starting like redis-server's.
"""
import os

from ops.core.errors import OpsError
from ops.engine import apt

CHROMIUM = "/usr/bin/chromium"
PACKAGES = ["redis-server", "redis-tools", "chromium", "git", "prometheus", "prometheus-alertmanager",
            "prometheus-redis-exporter"]


def ensure_host_packages() -> None:
    todo = apt.missing(PACKAGES)
    if not todo:
        return
    if os.geteuid() != 0:
        raise OpsError(f"{', '.join(todo)} missing for the tests: run `sudo apt-get install -y {' '.join(todo)}`")
    apt.install(todo, log=lambda m: print(m, flush=True), start_services=False)
