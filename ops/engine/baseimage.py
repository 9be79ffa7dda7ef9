"""Make sure `debian:bookworm-slim` exists: pull it, or build it from Debian's own packages.

With no registry reachable, the image is made the way the official one is: a minbase debootstrap
(here mmdebstrap) of bookworm, using this machine's configured apt sources (no mirror is hard-coded),
with the slim image's path exclusions, imported under the same name. On a machine with Docker Hub
the pull succeeds and nothing is built.
"""
import shutil
import tempfile
import time
from pathlib import Path

from ops.core.errors import OpsError
from ops.core.run import probe, run

BASE_IMAGE = "debian:bookworm-slim"
SUITE = "bookworm"
# What the official -slim variant leaves out (debuerreotype's slimification), as dpkg path filters.
SLIM_DPKG_OPTS = [
    "path-exclude=/usr/share/man/*", "path-exclude=/usr/share/info/*", "path-exclude=/usr/share/groff/*",
    "path-exclude=/usr/share/lintian/*", "path-exclude=/usr/share/linda/*", "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/doc/*", "path-include=/usr/share/doc/*/copyright",
]


def apt_sources() -> list[Path]:
    """The machine's own apt sources (deb822 files first, then the one-line list)."""
    found = sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    found += sorted(Path("/etc/apt/sources.list.d").glob("*.list"))
    legacy = Path("/etc/apt/sources.list")
    lines = legacy.read_text().splitlines() if legacy.exists() else []
    if any(line.strip() and not line.lstrip().startswith("#") for line in lines):
        found.append(legacy)
    return found


def exists(image: str = BASE_IMAGE) -> bool:
    return probe(["docker", "image", "inspect", image]).returncode == 0


def ensure(log=print) -> None:
    if exists():
        return
    log(f"base image: {BASE_IMAGE} is not here; trying to pull it")
    try:
        pulled = probe(["docker", "pull", BASE_IMAGE], timeout=300)
        if pulled.returncode == 0:
            log(f"base image: pulled {BASE_IMAGE}")
            return
        reason = (pulled.stderr.strip().splitlines() or ["no output"])[-1]
    except OpsError:  # the time-out
        reason = "timed out after 300s"
    log(f"base image: no registry answered ({reason[:160]}); building it from Debian's packages")
    build(log)


def build(log=print) -> None:
    if not shutil.which("mmdebstrap"):
        raise OpsError(f"{BASE_IMAGE} cannot be pulled and mmdebstrap is missing: run `apt-get install -y mmdebstrap` "
                       "(or `sudo ./invoke engine`), then retry")
    sources = apt_sources()
    if not sources:
        raise OpsError("no apt sources are configured in /etc/apt/sources.list(.d): add Debian's and retry")
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tenantstack-base-") as tmp:
        tarball = Path(tmp) / "rootfs.tar"
        cmd = ["mmdebstrap", "--variant=minbase", "--mode=root", "--format=tar",
               *(f"--dpkgopt={o}" for o in SLIM_DPKG_OPTS), SUITE, str(tarball), *map(str, sources)]
        log("+ " + " ".join(cmd))
        run(cmd, what=f"mmdebstrap (building {BASE_IMAGE})")
        size_mib = tarball.stat().st_size // 2**20
        log(f"base image: rootfs built in {time.monotonic() - t0:.1f}s ({size_mib} MiB); importing")
        # Same metadata as the official image: bash as the default command.
        run(["docker", "import", "--change", 'CMD ["bash"]', str(tarball), BASE_IMAGE], what=f"importing {BASE_IMAGE}")
    log(f"base image: {BASE_IMAGE} ready in {time.monotonic() - t0:.1f}s")
