"""CPU time the engine accounts to containers (their cgroups) and to host processes (/proc/<pid>/stat).

A container's cgroup is found from its main process: `docker inspect` gives State.Pid, /proc/<pid>/cgroup
names its cgroup, /proc/self/mountinfo where that hierarchy is mounted. cgroup v1 (and hybrid layouts)
reads `cpuacct.usage` (ns); the unified v2 hierarchy reads `usage_usec` from `cpu.stat`. Processes that
`docker exec` starts join the same cgroup, so a driver's or a healthcheck's CPU is counted too. The same
works on Docker and on Podman (runc or crun), which both put a container in a cgroup of its own.
"""
import os
from pathlib import Path

from ops.core.errors import OpsError
from ops.core.run import probe

TICKS = os.sysconf("SC_CLK_TCK")


def _mounts() -> dict[str, Path]:
    """'cpuacct' (v1) and/or '' (v2) -> where that hierarchy is mounted."""
    found = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fstype, _source, options = (right.split() + ["", ""])[:3]
        mount_point = Path(left.split()[4])
        if fstype == "cgroup2":
            found.setdefault("", mount_point)
        elif fstype == "cgroup" and "cpuacct" in options.split(","):
            found.setdefault("cpuacct", mount_point)
    return found


def counter_file(pid: int) -> Path:
    """The file that holds the cumulative CPU time of pid's cgroup."""
    mounts = _mounts()
    v1 = v2 = None
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "cpuacct" in controllers.split(","):
            v1 = path
        elif controllers == "":
            v2 = path
    # Hybrid layouts have both; v1's cpuacct is the one that accounts CPU there.
    if v1 is not None and "cpuacct" in mounts:
        return mounts["cpuacct"] / v1.lstrip("/") / "cpuacct.usage"
    if v2 is not None and "" in mounts:
        return mounts[""] / v2.lstrip("/") / "cpu.stat"
    raise OpsError(f"cannot find the CPU accounting of process {pid}: no cpuacct or cgroup2 hierarchy is mounted")


def read_ns(counter: Path) -> int:
    """Cumulative CPU nanoseconds in a cpuacct.usage or cpu.stat file."""
    text = counter.read_text()
    if counter.name == "cpuacct.usage":
        return int(text)
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "usage_usec":
            return int(value) * 1000
    raise OpsError(f"{counter} has no usage_usec line")


def container_pid(name: str) -> int:
    out = probe(["docker", "inspect", "--format", "{{.State.Pid}}", name])
    pid = int(out.stdout.strip() or 0) if out.returncode == 0 else 0
    if pid <= 0:
        raise OpsError(f"container {name} is not running: cannot read its CPU accounting")
    return pid


class Meter:
    """Cumulative CPU of a fixed set of containers, read without starting any process (cheap, exact)."""

    def __init__(self, names: list[str]):
        self.files = {n: counter_file(container_pid(n)) for n in names}

    def read(self) -> dict[str, int]:
        return {n: read_ns(f) for n, f in self.files.items()}


def delta_ms(before: dict[str, int], after: dict[str, int]) -> dict[str, float]:
    return {n: (after[n] - before[n]) / 1e6 for n in before}


def process_seconds(pid: int) -> float:
    """utime + stime of a host process and of its children it has waited for (/proc/<pid>/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()  # after "(comm)", which may contain spaces
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    return (utime + stime + cutime + cstime) / TICKS


def pid_from(path: Path) -> int | None:
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if Path(f"/proc/{pid}/stat").exists() else None
