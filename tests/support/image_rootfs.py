"""Run a program of one of the instance's images on the host: the very build that ships, not the host's own.

The images are Debian 13 (trixie); the host may be Debian 12, whose libc (2.36) cannot run trixie's
binaries directly (they need 2.38). So the image's filesystem is exported once per test session and its
programs run through the image's own dynamic loader with the image's own libraries
(`<root>/usr/lib64/ld-linux-x86-64.so.2 --library-path <root>/usr/lib/x86_64-linux-gnu <root>/usr/bin/X`):
the same valkey-server, valkey-cli, promtool, amtool and redis_exporter bytes the containers run, as plain
host processes (a test can signal them, run them as `nobody`, read their files). Statically linked
programs (Go builds can be) run as they are.

The images are the test instance's own (`./invoke test` builds them before pytest starts).
"""
import atexit
import functools
import shutil
import subprocess
import tempfile
from pathlib import Path

from ops.config.paths import INSTANCE

LOADER = "usr/lib64/ld-linux-x86-64.so.2"
LIBRARY_DIRS = ("usr/lib/x86_64-linux-gnu", "usr/lib")


def image(component: str) -> str:
    return INSTANCE.image(component)


@functools.cache
def rootfs(component: str) -> Path:
    """The image's whole filesystem, exported into a folder removed when the test process ends."""
    name = image(component)
    if subprocess.run(["docker", "image", "inspect", name], capture_output=True).returncode != 0:
        raise RuntimeError(f"image {name} is missing: run the tests with `./invoke test` (it builds the "
                           "instance's images first)")
    root = Path(tempfile.mkdtemp(prefix=f"tenantstack-rootfs-{component}-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    root.chmod(0o755)  # programs may run as `nobody` (tests that drop root)
    created = subprocess.run(["docker", "create", name], capture_output=True, text=True, check=True).stdout.strip()
    try:
        with subprocess.Popen(["docker", "export", created], stdout=subprocess.PIPE) as export:
            subprocess.run(["tar", "-x", "-C", str(root), "--exclude=dev/*"], stdin=export.stdout, check=True)
            export.stdout.close()
            if export.wait() != 0:
                raise RuntimeError(f"docker export of {name} failed (exit {export.returncode})")
    finally:
        subprocess.run(["docker", "rm", "-f", created], capture_output=True)
    return root


def _dynamic(path: Path) -> bool:
    """The ELF file names an interpreter (PT_INTERP), so it needs a loader; static ones do not."""
    data = path.read_bytes()[:4096]
    return data[:4] == b"\x7fELF" and b"ld-linux" in data


def argv(component: str, program: str) -> list[str]:
    """The command line that runs `program` (a name in /usr/bin or /usr/sbin, or a path) of the image."""
    root = rootfs(component)
    for candidate in ([program] if program.startswith("/") else [f"/usr/bin/{program}", f"/usr/sbin/{program}"]):
        path = root / candidate.lstrip("/")
        if path.exists():
            break
    else:
        raise RuntimeError(f"{program} is not in image {image(component)}")
    path = path.resolve()
    if not _dynamic(path):
        return [str(path)]
    libs = ":".join(str(root / d) for d in LIBRARY_DIRS)
    return [str(root / LOADER), "--library-path", libs, "--argv0", program.rsplit("/", 1)[-1], str(path)]


def bin_dir(component: str, programs: list[str], where: Path) -> Path:
    """A folder of small wrappers named like `programs`, for a script that finds them on PATH."""
    where.mkdir(parents=True, exist_ok=True)
    for program in programs:
        wrapper = where / program
        wrapper.write_text("#!/bin/sh\nexec " + " ".join(f"'{a}'" for a in argv(component, program)) + ' "$@"\n')
        wrapper.chmod(0o755)
    return where
