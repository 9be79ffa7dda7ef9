"""Checks before containers start: every port inside the instance's block and free (unless our own service holds it)."""
import errno
import json
import socket

from deployment import naming, ports
from deployment.instance import DEFAULT
from ops.config.envfile import rel
from ops.config.paths import INSTANCE
from ops.core.errors import OpsError
from ops.deploy import compose


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def running_services() -> set[str]:
    """The instance's services whose container may hold their ports: running, paused, or restarting (a container
    that crash-loops, e.g. a web whose database refused its password, holds its port between two attempts; `up` is
    what fixes it, so it must not take that port for another process's)."""
    out = compose.run("ps", "--format", "json", "--status", "running", "--status", "restarting", "--status", "paused",
                      profiles=compose.all_profiles(), capture=True, quiet=True, check=False)
    services = set()
    for raw in (out.stdout or "").splitlines():
        line = raw.strip()
        if not line:
            continue
        rows = json.loads(line)
        for row in rows if isinstance(rows, list) else [rows]:
            services.add(row.get("Service"))
    return services


def other_instance_owning(port: int) -> str | None:
    """The name of another registered instance whose port block holds `port`."""
    block = ports.block_of_port(port)
    if block is None or block == INSTANCE.block:
        return None
    if block == 0:
        return DEFAULT  # block 0 is always the default instance's, used here yet or not
    for name, entry in ports.entries().items():
        if entry.get("block") == block:
            return name
    return None


def check_ports(tenant_list, redis_too: bool = True, tools: bool = False, monitoring: bool = False) -> None:
    """Collect every clash (another instance's block, or a port another process holds), then fail once."""
    running = running_services()
    wanted = []
    if redis_too:
        wanted.append(("redis", INSTANCE.redis_port, "the instance's Redis port"))
    if tools:
        wanted.append(("redis-commander", INSTANCE.tools_port, "the instance's redis-commander port"))
    if monitoring:
        wanted += [(naming.PROMETHEUS_SERVICE, INSTANCE.prometheus_port, "the instance's Prometheus port"),
                   (naming.ALERTMANAGER_SERVICE, INSTANCE.alertmanager_port, "the instance's Alertmanager port")]
    wanted += [(t.service("web"), t.web_port, f"WEB_PORT in {rel(t.env_file)}") for t in tenant_list]
    clashes = []
    for service, port, what in wanted:
        owner = other_instance_owning(port)
        if owner:
            low, high = ports.block_range(INSTANCE.block)
            clashes.append(f"port {port} ({what}) is in instance {owner}'s port block: "
                           f"use a port of instance {INSTANCE.name}'s block {low}-{high}")
        elif service not in running and port_in_use(port):
            clashes.append(f"port {port} ({what}) is in use by another process: stop it"
                           + (" or set WEB_PORT to a free port" if "WEB_PORT" in what else ""))
    if clashes:
        raise OpsError("; ".join(clashes))
