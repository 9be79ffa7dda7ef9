"""What the test suite needs on the host besides the engine.

chromium:     Debian's browser, driven by Playwright in the redis-commander and Prometheus UI tests (Playwright's
              own browser download is never used: no such download is possible here).
git:          the README quick-start test clones this checkout.
Nothing else: the server (valkey-server, valkey-cli), promtool, amtool and redis_exporter the tests run are the
instance's own images' (tests/support/image_rootfs.py runs them on the host through each image's own loader), so
the tests run what ships, never a host package of another version.
"""
import os

from ops.core.errors import OpsError
from ops.engine import apt

CHROMIUM = "/usr/bin/chromium"
PACKAGES = ["chromium", "git"]


def ensure_host_packages() -> None:
    todo = apt.missing(PACKAGES)
    if not todo:
        return
    if os.geteuid() != 0:
        raise OpsError(f"{', '.join(todo)} missing for the tests: run `sudo apt-get install -y {' '.join(todo)}`")
    apt.install(todo, log=lambda m: print(m, flush=True), start_services=False)
