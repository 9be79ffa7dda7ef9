"""A per-tenant cap on connections to Redis, which Redis 7.0 cannot set per user (maxclients is shared).

Without it one tenant can open connections until Redis' shared `maxclients` is used up, and every other
tenant is locked out. Each tenant reaches Redis only on its own network (ops/deploy/compose.py), where
Redis has an address of its own; so a cap on connections to that address is a cap on that tenant.

The rules live in the Redis container's own network namespace (entered with nsenter from the host, as
root), in the filter table that no engine writes there: Docker Engine and Podman alike, nothing of the
host's firewall is touched. One chain, TENANTSTACK_CONNLIMIT, rebuilt whole with iptables-restore:
  - connections from the network's gateway return untouched: that is the host (the published operator
    port arrives through it), never a tenant container;
  - a new TCP connection to Redis' address on tenant T's network is reset once T already holds
    REDIS_MAX_CONNECTIONS (T's env file) there (connlimit grouped by that destination address).
A new network namespace comes with every start of the Redis container, so `up`, restore and recover
apply the rules after they start Redis; a Redis the engine restarted by itself (a crash) runs without
them until the next `up` (`check()` says so; the README's security section lists it).
"""
import json
import shutil

from deployment import envs, naming
from ops.config.envfile import read_env
from ops.config.paths import INSTANCE
from ops.config.tenants import env_path, example_path
from ops.core.errors import OpsError
from ops.core.run import probe, run
from ops.deploy import containers

CHAIN = "TENANTSTACK_CONNLIMIT"
SETTING = envs.TENANT["REDIS_MAX_CONNECTIONS"]


def limit_of(tenant: str) -> int:
    path = env_path(tenant) if env_path(tenant).exists() else example_path(tenant)
    return int(envs.value_of(SETTING, read_env(path)))


def _redis() -> tuple[int, dict]:
    """The Redis container's pid and its networks (name -> {IPAddress, Gateway, ...})."""
    out = probe(["docker", "inspect", containers.name(naming.REDIS_SERVICE)])
    found = json.loads(out.stdout or "[]") if out.returncode == 0 else []
    if not found or not found[0]["State"].get("Running") or not found[0]["State"].get("Pid"):
        raise OpsError("Redis is not running, so its connection limits cannot be set: start it with `./invoke up`")
    return found[0]["State"]["Pid"], found[0]["NetworkSettings"]["Networks"] or {}


def rules(limits: dict[str, int], networks: dict) -> list[str]:
    """The chain's rules (iptables-restore lines) for the tenants ({tenant: cap}) whose network Redis is on."""
    lines = []
    for tenant, limit in limits.items():
        net = networks.get(INSTANCE.network(naming.tenant_network(tenant))) or {}
        if not net.get("IPAddress"):
            continue  # Redis is not on that tenant's network (yet): nothing of the tenant can reach it
        if net.get("Gateway"):
            lines.append(f"-A {CHAIN} -s {net['Gateway']} -j RETURN")
        lines.append(f"-A {CHAIN} -d {net['IPAddress']} -p tcp --dport {naming.REDIS_TLS_PORT} --syn "
                     f"-m connlimit --connlimit-above {limit} --connlimit-mask 32 --connlimit-daddr "
                     "-j REJECT --reject-with tcp-reset")
    return lines


def apply(tenants: list[str], log=print) -> None:
    """Set every tenant's cap in the running Redis container's network namespace (idempotent)."""
    for tool in ("nsenter", "iptables-restore"):
        if not shutil.which(tool):
            raise OpsError(f"{tool} is missing, so Redis' per-tenant connection limits cannot be set: "
                           "install it (apt-get install -y util-linux iptables) and run `./invoke up` again")
    pid, networks = _redis()
    limits = {t: limit_of(t) for t in tenants}
    lines = rules(limits, networks)
    table = "\n".join(["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
                       f":{CHAIN} - [0:0]", f"-A INPUT -j {CHAIN}", *lines, "COMMIT", ""])
    run(["nsenter", "--target", str(pid), "--net", "iptables-restore"], input=table,
        what="setting Redis' per-tenant connection limits")
    capped = [t for t in tenants if INSTANCE.network(naming.tenant_network(t)) in networks]
    log(f"Redis connections capped per tenant: {', '.join(f'{t} {limits[t]}' for t in capped) or 'none yet'}")


def check(tenants: list[str]) -> list[str]:
    """What is missing from the running Redis' caps (empty when every tenant's is in place)."""
    pid, networks = _redis()
    out = probe(["nsenter", "--target", str(pid), "--net", "iptables", "-S", CHAIN])
    have = {_key(line) for line in out.stdout.splitlines()} if out.returncode == 0 else set()
    missing = [rule for rule in rules({t: limit_of(t) for t in tenants}, networks) if _key(rule) not in have]
    return [f"Redis has no per-tenant connection limit in place ({len(missing)} rule(s) missing): run `./invoke up`"] \
        if missing else []


def _key(rule: str) -> tuple:
    """What makes a rule ours: iptables -S prints addresses with /32 and expands --syn, so compare these only."""
    words = rule.replace("/32", "").split()
    return tuple(words[words.index(flag) + 1] if flag in words else None for flag in ("-s", "-d", "--connlimit-above"))
