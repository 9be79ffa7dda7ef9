"""What the test suite needs on the host besides the engine: Debian's redis-server for fast tests."""
import os
import shutil
import subprocess

from .errors import OpsError


def ensure_local_redis_server() -> None:
    if shutil.which("redis-server") and shutil.which("redis-check-aof"):
        return
    if os.geteuid() != 0:
        raise OpsError("redis-server is missing for the fast tests: run `sudo apt-get install -y redis-server`")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print("+ apt-get install -y redis-server", flush=True)
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "redis-server"], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    # No init system runs it; make sure the package's own instance is not left running either.
    subprocess.run(["pkill", "-x", "redis-server"], check=False)


CHROMIUM = "/usr/bin/chromium"  # Debian's browser, driven by Playwright in the redis-commander UI test


def ensure_chromium() -> None:
    """Debian's chromium for the browser test (Playwright's own browser download is never used)."""
    if os.path.exists(CHROMIUM):
        return
    if os.geteuid() != 0:
        raise OpsError(f"{CHROMIUM} is missing for the redis-commander browser test: "
                       "run `sudo apt-get install -y chromium`")
    _apt_install("chromium")


def _apt_install(*packages: str) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print(f"+ apt-get install -y {' '.join(packages)}", flush=True)
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages], check=True, env=env,
                   stdout=subprocess.DEVNULL)
