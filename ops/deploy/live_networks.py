"""Starting a new tenant without restarting a shared server: its network is connected to the running server live.

Each tenant has a network of its own that Redis joins, and PostgreSQL too when the tenant is on it
(ops/deploy/compose.py). Listing one more network in a server's Compose definition changes its configuration hash,
and Compose would recreate the server on the next `up` of anything that depends on it: every tenant's connections
cut, a restart's worth of downtime, to add one tenant. Instead, when a shared server (SHARED: Redis, PostgreSQL)
runs and its definition differs from what created it *only* by networks, the missing networks are connected to the
running container (`docker network connect --alias <service>`, the name its certificate carries) and Compose starts
the other services without touching it (`--no-deps`: the server is running and healthy).

Which networks a server was created with is remembered per container id (STATE/<service>-networks.json): the
container keeps the ones connected live, and only the creation's list reproduces Compose's hash. Any other change
(image, config mount, limits) still recreates the server through Compose as before, with every network in its
definition.
"""
import json

from deployment import naming
from ops.config.paths import INSTANCE, STATE
from ops.core.run import probe, run

CONFIG_HASH_LABEL = "com.docker.compose.config-hash"
# The servers every tenant (of a kind) shares, in the order they start; what an operator reads in the log.
SHARED = {naming.REDIS_SERVICE: "Redis", naming.POSTGRES_SERVICE: "PostgreSQL"}


def record(service: str):
    """{container id: [short network names the server was created with]}; redis-networks.json as before."""
    return STATE / f"{service}-networks.json"


def _running(service: str) -> dict | None:
    out = probe(["docker", "inspect", INSTANCE.container(service)])
    if out.returncode != 0:
        return None
    found = json.loads(out.stdout)[0]
    return found if found["State"]["Running"] else None


def _short(network: str) -> str:
    prefix = f"{INSTANCE.compose_project}_"
    return network[len(prefix):] if network.startswith(prefix) else network


def _load(service: str) -> dict:
    try:
        return json.loads(record(service).read_text())
    except (OSError, ValueError):
        return {}


def variant(doc: dict, service: str, created_with: list[str]) -> dict:
    """The generated file as it was when the server was created: its networks those of the creation only."""
    return {**doc, "services": {**doc["services"], service: {"networks": created_with}},
            "networks": {**doc["networks"], **{n: {} for n in created_with}}}


def plan(service: str, config_hash, doc: dict) -> tuple[dict, list[str], list[str]] | None:
    """(record entry, networks to connect, networks to disconnect) when `service` runs and differs from its
    definition only by networks; None when Compose should converge it itself (not running, up to date, or changed
    otherwise).

    config_hash(service, doc=None): Compose's configuration hash of it, from the generated file or from `doc`."""
    found = _running(service)
    if found is None or service not in doc["services"]:
        return None
    label = found["Config"]["Labels"].get(CONFIG_HASH_LABEL, "")
    wanted = list(doc["services"][service]["networks"])
    attached = sorted(_short(n) for n in found["NetworkSettings"]["Networks"])
    missing = [n for n in wanted if n not in attached]
    gone = [n for n in attached if n not in wanted]  # a removed tenant's network
    if config_hash(service) == label:  # its definition is what created it: only live-connected networks may differ
        return ({found["Id"]: wanted}, missing, gone) if missing or gone else None
    created_with = _load(service).get(found["Id"], attached)
    if config_hash(service, variant(doc, service, created_with)) != label:
        return None  # more than networks changed: Compose recreates it with all of them
    return {found["Id"]: created_with}, missing, gone


def existing(shorts: list[str]) -> list[str]:
    """The networks among `shorts` the engine has (Compose creates a network with the first service using it)."""
    return [s for s in shorts if probe(["docker", "network", "inspect", INSTANCE.network(s)]).returncode == 0]


def connect(service: str, entry: dict, missing: list[str], gone: list[str], log=print) -> None:
    """Connect the running server to each missing network (which Compose has created by now) under its service
    name, and disconnect it from the networks of tenants that are gone."""
    what = SHARED.get(service, service)
    container = INSTANCE.container(service)
    for short in missing:
        run(["docker", "network", "connect", "--alias", service, INSTANCE.network(short), container],
            what=f"connecting {what} to network {short}")
        log(f"{what} joined network {short} while running (no restart)")
    for short in gone:
        run(["docker", "network", "disconnect", INSTANCE.network(short), container],
            what=f"disconnecting {what} from network {short}")
        log(f"{what} left network {short} while running (no restart)")
    STATE.mkdir(parents=True, exist_ok=True)
    record(service).write_text(json.dumps(entry))  # only the running container's: older ids are gone
