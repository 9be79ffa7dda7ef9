"""Isolation between Compose networks on the provisioned Podman, kept by rules of our own.

Netavark 1.4 (Debian 12's, behind Podman 4.3) isolates bridge networks created through the Docker API
(`isolate=true`) with a jump from FORWARD to its NETAVARK_ISOLATION_1 chain. That jump has netavark's
"teardown on complete" policy: removing one isolated network (any instance's `down`, a test run's
cleanup) can remove the jump while other networks still need it, until the next container start
anywhere puts it back. In that window one tenant's containers reach another tenant's by address.

So on the Podman this project provisions, `up` keeps two chains of its own, which netavark never
touches: TENANTSTACK_ISOLATION (jumped to first from FORWARD) sends traffic that leaves a
Compose-managed bridge for another interface to TENANTSTACK_ISOLATION_2, which drops it when that other
interface is another Compose-managed bridge. Traffic within one network, to the host and to the outside
is untouched. They are rebuilt from every Compose network on the host at each `up` (bridges appear and
disappear with instances). On Docker Engine nothing is done: its DOCKER-ISOLATION chains do this.
"""
import json
import shutil

from deployment.instance import PROJECT_LABEL
from ops.core.run import probe, run
from ops.engine.provision import podman_in_use

CHAIN = "TENANTSTACK_ISOLATION"
CHAIN2 = "TENANTSTACK_ISOLATION_2"


def compose_bridges() -> list[str]:
    """The bridge interface of every Compose-managed Podman network on this host, all instances alike."""
    out = probe(["podman", "network", "ls", "--format", "json"])
    networks = json.loads(out.stdout or "[]") if out.returncode == 0 else []
    return sorted({n["network_interface"] for n in networks
                   if PROJECT_LABEL in (n.get("labels") or {}) and n.get("network_interface")})


def rules(bridges: list[str]) -> dict[str, list[list[str]]]:
    """chain -> its rules (iptables arguments after `-A CHAIN`)."""
    return {CHAIN: [["-i", b, "!", "-o", b, "-j", CHAIN2] for b in bridges],
            CHAIN2: [["-o", b, "-j", "DROP"] for b in bridges]}


def apply(log=print) -> bool:
    """Rebuild the chains from the host's Compose bridges; returns whether anything was applied."""
    if not podman_in_use() or not shutil.which("iptables") or not shutil.which("podman"):
        return False
    bridges = compose_bridges()
    wanted = rules(bridges)
    for chain in wanted:  # both exist before any rule names one of them as its target
        if probe(["iptables", "-w", "-n", "-L", chain]).returncode != 0:
            run(["iptables", "-w", "-N", chain], what=f"creating iptables chain {chain}")
    for chain in (CHAIN2, CHAIN):  # the inner chain first: no moment where the outer one jumps into nothing
        run(["iptables", "-w", "-F", chain], what=f"flushing iptables chain {chain}")
        for rule in wanted[chain]:
            run(["iptables", "-w", "-A", chain, *rule], what=f"adding an isolation rule to {chain}")
    if probe(["iptables", "-w", "-C", "FORWARD", "-j", CHAIN]).returncode != 0:
        run(["iptables", "-w", "-I", "FORWARD", "1", "-j", CHAIN], what="jumping from FORWARD to the isolation chain")
    log(f"isolation: {len(bridges)} Compose networks on this host kept apart ({CHAIN})")
    return True
