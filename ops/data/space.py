"""Free space before a backup or restore writes: measure the data in the running containers, refuse in one line.

The data is measured where it lives (`du` in the Redis and tenant containers), then a margin is added,
because the files may grow between the check and the copy.
"""
import shutil
from pathlib import Path

from ops.core.errors import OpsError
from ops.core.run import probe
from ops.deploy import containers

SPACE_FACTOR, SPACE_EXTRA = 1.25, 8 << 20  # free space wanted beyond the measured data


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def data_size(service: str, paths: list[str]) -> int:
    """Bytes the paths take inside a running service's container (0 for missing ones)."""
    out = probe(["docker", "exec", containers.name(service), "du", "-sbc", *paths], what=f"measuring {service}'s data")
    rows = [line.split() for line in (out.stdout or "").splitlines()]
    return next((int(row[0]) for row in rows if row[1:] == ["total"] and row[0].isdigit()), 0)  # du -c's last line


def check_space(folder: Path, data_bytes: int, what: str) -> None:
    """Refuse in one line when `folder` has not room for data_bytes plus a margin."""
    need = int(data_bytes * SPACE_FACTOR) + SPACE_EXTRA
    free = shutil.disk_usage(folder).free
    if free < need:
        raise OpsError(f"{what} needs about {_mib(need)} free in {folder} (data {_mib(data_bytes)} + margin) but only "
                       f"{_mib(free)} is free: free space there (fewer backups: `./invoke backup --keep N`) and retry")
