"""Host ports: each instance owns one block of them, recorded host-wide so two instances never collide.

Block k shifts every base port by k * STRIDE: block 0 (the default instance `tenantstack`) keeps the
ports it always had (Redis 6380, tenant webs 8001-8080, redis-commander 8081, Prometheus 9090,
Alertmanager 9093); block 1 gets 7380, 9001-9080, 9081, 10090, 10093; and so on. With a stride of 1000
no port of one block is a port of another block, whatever k, up to MAX_BLOCK (the last block whose
ports stay below 65536): the bases differ modulo 1000 (380, 001-081, 090, 093), so they never meet.

The registry is one JSON file, REGISTRY (under TENANTSTACK_STATE_DIR, default /var/lib/tenantstack),
written under an exclusive lock: `{"instances": {"<name>": {"block": k, "root": ..., "owner_pid": ...}}}`.
Instances of every checkout on the host share it, because they share the host's ports and the engine's
project names. `owner_pid` marks a throwaway instance (the test suite's): when that process is gone,
the next test run removes what it left.
"""
import contextlib
import datetime as dt
import fcntl
import json
import os
from pathlib import Path

from .errors import DeploymentError

STRIDE = 1000
REDIS_BASE = 6380
FIRST_WEB_BASE = 8001
LAST_WEB_BASE = 8080  # 80 tenants per instance
TOOLS_BASE = 8081
PROMETHEUS_BASE = 9090  # the monitoring profile (./invoke up --monitoring): Prometheus' UI and API
ALERTMANAGER_BASE = 9093  # ... and Alertmanager's API
_SINGLE_BASES = (REDIS_BASE, TOOLS_BASE, PROMETHEUS_BASE, ALERTMANAGER_BASE)
HIGHEST_BASE = max(*_SINGLE_BASES, LAST_WEB_BASE)
MAX_BLOCK = (65535 - HIGHEST_BASE) // STRIDE
STATE_DIR_VAR = "TENANTSTACK_STATE_DIR"
THROWAWAY_VAR = "TENANTSTACK_THROWAWAY_OWNER"  # pid of the process that owns a throwaway instance


def state_dir() -> Path:
    return Path(os.environ.get(STATE_DIR_VAR) or "/var/lib/tenantstack")


def registry_path() -> Path:
    return state_dir() / "instances.json"


def block_range(block: int) -> tuple[int, int]:
    """The lowest and highest host port of a block (every port an instance may publish lies inside).

    Ranges of neighbouring blocks interleave (block 1's Redis port lies inside block 0's range); the
    ports themselves never collide: block_ports()."""
    return REDIS_BASE + block * STRIDE, HIGHEST_BASE + block * STRIDE


def block_ports(block: int) -> set[int]:
    off = block * STRIDE
    return {*(base + off for base in _SINGLE_BASES), *range(FIRST_WEB_BASE + off, LAST_WEB_BASE + off + 1)}


def block_of_port(port: int) -> int | None:
    for block in range(MAX_BLOCK + 1):
        if port in block_ports(block):
            return block
    return None


@contextlib.contextmanager
def _locked():
    """The registry as a dict, written back on exit, under an exclusive lock."""
    path = registry_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = open(path.with_suffix(".lock"), "a")  # noqa: SIM115 - closed by the `with` right below
    except OSError as exc:
        raise DeploymentError(f"cannot write the instance registry in {path.parent} ({exc.strerror}): "
                              f"run as root, or set {STATE_DIR_VAR} to a folder you own") from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            data = json.loads(path.read_text()) if path.exists() else {}
        except ValueError:
            raise DeploymentError(f"{path} is not valid JSON: fix it or move it aside "
                                  "(it only records port blocks)") from None
        data.setdefault("instances", {})
        before = json.dumps(data, sort_keys=True)
        yield data
        if json.dumps(data, sort_keys=True) != before:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
            tmp.replace(path)


def entries() -> dict[str, dict]:
    path = registry_path()
    try:
        return json.loads(path.read_text()).get("instances", {}) if path.exists() else {}
    except (OSError, ValueError):
        return {}


def _root_alive(entry: dict) -> bool:
    root = entry.get("root")
    return bool(root) and Path(root).is_dir()


def claim(name: str, root: Path, default: bool) -> int:
    """The block of instance `name`, allocating the lowest free one on first use."""
    with _locked() as data:
        instances = data["instances"]
        entry = instances.get(name)
        if default:
            instances[name] = {**(entry or {}), "block": 0}
            return 0
        if entry and entry.get("root") not in (None, str(root)) and _root_alive(entry):
            raise DeploymentError(f"instance '{name}' belongs to the checkout at {entry['root']}: pick another "
                                  f"name with TENANTSTACK_INSTANCE, or remove it there with "
                                  f"`./invoke instance-remove {name}`")
        if entry is None:
            used = {e["block"] for e in instances.values()} | {0}
            free = [b for b in range(1, MAX_BLOCK + 1) if b not in used]
            if not free:
                raise DeploymentError(f"all {MAX_BLOCK} port blocks are in use ({registry_path()}): "
                                      "remove an instance with `./invoke instance-remove NAME`")
            entry = {"block": free[0], "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
            owner = os.environ.get(THROWAWAY_VAR)
            if owner:
                entry["owner_pid"] = int(owner)
        entry["root"] = str(root)
        instances[name] = entry
        return entry["block"]


def release(name: str) -> None:
    with _locked() as data:
        data["instances"].pop(name, None)


def abandoned_throwaways() -> list[str]:
    """Throwaway instances whose owning process is gone (a test run that was killed)."""
    gone = []
    for name, entry in entries().items():
        pid = entry.get("owner_pid")
        if pid and not Path(f"/proc/{pid}").exists():
            gone.append(name)
    return sorted(gone)
