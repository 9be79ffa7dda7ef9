"""Checks before containers start: ports free (unless our own service holds them)."""
import errno
import json
import socket

from tenantstack import naming

from . import compose
from .errors import OpsError
from .envfile import rel


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def running_services() -> set[str]:
    out = compose.run("ps", "--format", "json", "--status", "running", profiles=compose.all_profiles(),
                      capture=True, quiet=True, check=False)
    services = set()
    for line in (out.stdout or "").splitlines():
        line = line.strip()
        if not line:
            continue
        rows = json.loads(line)
        for row in rows if isinstance(rows, list) else [rows]:
            services.add(row.get("Service"))
    return services


def check_ports(tenant_list, redis_too: bool = True) -> None:
    """Collect every clash, then fail once."""
    running = running_services()
    clashes = []
    if redis_too and "redis" not in running and port_in_use(naming.REDIS_TLS_PORT):
        clashes.append(f"port {naming.REDIS_TLS_PORT} (Redis TLS) is in use by another process: stop it")
    for t in tenant_list:
        if t.service("web") not in running and port_in_use(t.web_port):
            clashes.append(f"port {t.web_port} (WEB_PORT in {rel(t.env_file)}) is in use by another process: "
                           f"stop it or set WEB_PORT to a free port")
    if clashes:
        raise OpsError("; ".join(clashes))
