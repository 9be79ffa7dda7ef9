"""Docker Engine as tenantstack provisions it: Debian's docker.io, dockerd started by us where no init runs it.

Debian 12's docker.io is Docker Engine 20.10 (with containerd, runc and tini as its dependencies). Its
package would start dockerd through the init system; hosts of this kind have none, so the package is
installed with service starts refused (ops/engine/apt.py) and dockerd is started here, detached, with a
pid file and a log, and started again by the next `./invoke` after a reboot (provision.ensure).

Which socket: the default one, /var/run/docker.sock, unless another engine (the Podman an earlier
release provisioned) already answers there; then a socket of its own, and the operator's plain `docker`
reaches it through a docker context (`docker context use tenantstack-docker`) or DOCKER_HOST. The choice
is recorded under /etc, so it survives a reboot (/run does not).
"""
import json
import shutil
from pathlib import Path

from ops.core.errors import OpsError
from ops.core.run import probe, wait_until
from ops.engine import apt, daemons

# iptables: Docker's networks and their isolation; mmdebstrap: the base image when no registry answers.
APT_PACKAGES = ["docker.io", "iptables", "mmdebstrap"]
DEFAULT_SOCKET = Path("/var/run/docker.sock")
OWN_SOCKET = Path("/run/tenantstack/docker.sock")
ADDRESS_POOL = "base=172.16.0.0/12,size=24"  # 4096 networks of 254 addresses (see start())
STATE = Path("/etc/tenantstack/docker-engine.json")  # {"socket": "..."}: where our dockerd listens
CONTEXT = "tenantstack-docker"
NAME = "dockerd"  # the pid file's and log's name (ops/engine/daemons.py)
# dockerd's own pid file and its managed containerd's: dockerd refuses to start while the first names a
# process, and waits for the containerd the second names. A killed dockerd (and the containerd it takes
# with it) stays a zombie where PID 1 reaps nothing, as on hosts of this kind, so both pid files are
# cleared before a start when their process is gone; containerd's state and the containers' shims stay,
# so the new containerd and dockerd (live-restore) take the running containers back.
DOCKERD_PIDFILE = Path("/var/run/docker.pid")
CONTAINERD_PIDFILE = Path("/var/run/docker/containerd/containerd.pid")
PIDFILES = {DOCKERD_PIDFILE: b"dockerd", CONTAINERD_PIDFILE: b"containerd"}


def provisioned() -> bool:
    """tenantstack installed Docker Engine here (so starting dockerd after a reboot is ours to do)."""
    return STATE.exists() and shutil.which("dockerd") is not None


def socket() -> Path | None:
    """Where our dockerd listens, as recorded when it was provisioned."""
    try:
        return Path(json.loads(STATE.read_text())["socket"])
    except (OSError, ValueError, KeyError):
        return None


def host() -> str | None:
    sock = socket()
    return f"unix://{sock}" if sock else None


def choose_socket(default_taken: bool) -> Path:
    """The default socket, unless another engine answers there."""
    return OWN_SOCKET if default_taken else DEFAULT_SOCKET


def install(default_taken: bool, log=print) -> Path:
    """Install docker.io (services not started) and record the socket dockerd will listen on."""
    apt.install(APT_PACKAGES, log, start_services=False)
    if not shutil.which("dockerd"):
        raise OpsError("docker.io was installed but dockerd is not on PATH: check `dpkg -L docker.io`")
    sock = socket() or choose_socket(default_taken)
    if socket() != sock:
        STATE.parent.mkdir(parents=True, exist_ok=True)
        STATE.write_text(json.dumps({"socket": str(sock)}) + "\n")
        log(f"engine: Docker Engine will listen on unix://{sock} (recorded in {STATE})")
    return sock


def start(log=print) -> None:
    """Start our dockerd unless it answers already (idempotent; after a reboot too)."""
    sock = socket()
    if sock is None:
        raise OpsError(f"Docker Engine is not provisioned here ({STATE} is missing): "
                       "run `./invoke engine --kind docker`")
    if daemons.socket_answers(sock):
        return
    if daemons.pid_alive(NAME):
        # Started but not answering yet: wait for it rather than starting a second daemon.
        log(f"engine: waiting for the running dockerd to answer on unix://{sock}")
    else:
        _clear_stale_pidfiles(log)
        sock.parent.mkdir(parents=True, exist_ok=True)
        if sock.is_symlink():
            sock.unlink()  # a link to another engine's socket that no longer answers (e.g. after a reboot)
        log(f"engine: starting Docker Engine (dockerd) on unix://{sock}")
        # live-restore: containers keep running while dockerd is down (a crash, an upgrade of docker.io)
        # and are taken back when it returns, instead of being killed and restarted at its start.
        # Address pools: Docker's defaults give 31 bridge networks in all (/16s and /20s), and every tenant has a
        # network of its own: the 26th tenant (fewer beside other instances) would fail "could not find an available,
        # non-overlapping IPv4 address pool". /24s in the same private 172.16.0.0/12 give 4096.
        daemons.spawn(["dockerd", "--host", f"unix://{sock}", "--live-restore", "--log-level", "warn",
                       "--default-address-pool", ADDRESS_POOL], NAME)
    wait_until(lambda: None if daemons.socket_answers(sock) else f"unix://{sock} to answer", timeout=90,
               what="Docker Engine (dockerd)", interval=0.3, fix=f"see {daemons.LOG_DIR}/{NAME}.log")


def _clear_stale_pidfiles(log) -> None:
    for path, program in PIDFILES.items():
        try:
            pid = int(path.read_text())
        except (OSError, ValueError):
            continue
        if not daemons.running(pid, program):
            path.unlink(missing_ok=True)
            log(f"engine: removed {path} of a {program.decode()} that is gone (pid {pid})")


def ensure_context(log=print) -> None:
    """A docker context for our dockerd when it is not on the default socket: `docker context use` it."""
    sock = socket()
    if sock is None or sock == DEFAULT_SOCKET:
        return
    if probe(["docker", "context", "inspect", CONTEXT]).returncode == 0:
        return
    out = probe(["docker", "context", "create", CONTEXT, "--description", "tenantstack's Docker Engine",
                 "--docker", f"host=unix://{sock}"])
    if out.returncode == 0:
        log(f"engine: created docker context {CONTEXT} (`docker context use {CONTEXT}`, or "
            f"export DOCKER_HOST=unix://{sock}, to reach this engine with plain `docker`)")


def pid() -> int | None:
    """Our running dockerd's pid (None when it is not running)."""
    return daemons.pid_of(NAME)


def environment_hint() -> str:
    sock = socket()
    if sock is None or sock == DEFAULT_SOCKET:
        return ""
    return (f"Docker Engine listens on unix://{sock}: export DOCKER_HOST=unix://{sock} (or `docker context use "
            f"{CONTEXT}`) so that ./invoke and docker use it")
