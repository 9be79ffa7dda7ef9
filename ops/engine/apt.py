"""Install Debian packages non-interactively: only the missing ones, one `apt-get update`, command printed."""
import contextlib
import os
from pathlib import Path

from ops.core.run import probe, run

POLICY_RC_D = Path("/usr/sbin/policy-rc.d")


def missing(packages) -> list[str]:
    return [p for p in packages if probe(["dpkg", "-s", p]).returncode != 0]


@contextlib.contextmanager
def no_service_starts():
    """Debian's invoke-rc.d asks policy-rc.d before starting a package's service: exit 101 means "don't".

    Installed only for the duration of the install and only when the host has none of its own, so a
    package such as redis-server never leaves its own instance running (nothing is killed afterwards).
    """
    if POLICY_RC_D.exists():
        yield
        return
    POLICY_RC_D.write_text("#!/bin/sh\n# tenantstack: no package service starts during this install\nexit 101\n")
    POLICY_RC_D.chmod(0o755)
    try:
        yield
    finally:
        POLICY_RC_D.unlink(missing_ok=True)


def install(packages, log=print, start_services: bool = True) -> list[str]:
    """Install whichever of `packages` are absent; returns what was installed."""
    todo = missing(packages)
    if not todo:
        return []
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    guard = contextlib.nullcontext() if start_services else no_service_starts()
    with guard:
        for argv in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "--no-install-recommends", *todo]):
            log("+ " + " ".join(argv))
            run(argv, env=env, what=" ".join(argv[:2]))
    return todo
