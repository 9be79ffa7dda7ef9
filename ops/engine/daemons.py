"""Long-lived helper processes started by tenantstack where no init system runs them, and the sockets they serve.

The engine's daemons (dockerd, or Podman's API service) and Podman's healthcheck runner outlive the
`./invoke` call that starts them: each is detached into its own session, with a pid file under
/run/tenantstack (gone after a reboot, like the process) and a log under /var/log/tenantstack. A pid
file is trusted only while /proc shows that pid still running the program it was written for.
"""
import socket
import subprocess
from pathlib import Path

STATE_DIR = Path("/run/tenantstack")
LOG_DIR = Path("/var/log/tenantstack")


def spawn(cmd: list[str], name: str) -> None:
    """Start a long-lived background process that outlives this invoke call (no systemd here).

    The one Popen outside ops/core/run.py: run() waits for its program to end, and this one must not.
    """
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with open(LOG_DIR / f"{name}.log", "ab") as out:
        # cwd "/": a daemon must not hold the folder it was started from (a checkout that is later
        # deleted leaves Podman's service unable to start conmon: "Failed to get working directory").
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, close_fds=True, cwd="/")
    (STATE_DIR / f"{name}.pid").write_text(str(proc.pid))


def pid_of(name: str, marker: bytes | None = None) -> int | None:
    """The pid of the process we started under `name`, while it is still running (and was not reused):
    its command line still holds `marker` (default: the name itself)."""
    try:
        pid = int((STATE_DIR / f"{name}.pid").read_text())
        return pid if (marker or name.encode()) in Path(f"/proc/{pid}/cmdline").read_bytes() else None
    except (OSError, ValueError):
        return None


def running(pid: int, marker: bytes) -> bool:
    """`pid` is a live process whose command line holds `marker` (a zombie's command line is empty)."""
    try:
        return marker in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def pid_alive(name: str) -> bool:
    return pid_of(name) is not None


def socket_answers(sock: Path) -> bool:
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
