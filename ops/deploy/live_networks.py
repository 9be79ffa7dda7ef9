"""Starting a new tenant without restarting the shared server: its network is connected to the running Redis live.

Each tenant has a network of its own that Redis joins (ops/deploy/compose.py). Listing one more network in Redis'
Compose definition changes its configuration hash, and Compose would recreate Redis on the next `up` of anything
that depends on it: every tenant's connections cut, a restart's worth of downtime, to add one tenant. Instead,
when Redis runs and its definition differs from what created it *only* by networks, the missing networks are
connected to the running container (`docker network connect --alias redis`, the name its certificate carries),
those of tenants that are gone are disconnected, and Compose starts the other services without touching Redis
(`--no-deps`: Redis is running and healthy).

Which networks Redis was created with is remembered per container id (STATE/redis-networks.json): the container
keeps the ones connected live, and only the creation's list reproduces Compose's hash. Any other change (image,
redis.conf mount, limits) still recreates Redis through Compose as before, with every network in its definition.
"""
import json

from deployment import naming
from ops.config.paths import INSTANCE, STATE
from ops.core.run import probe, run

CONFIG_HASH_LABEL = "com.docker.compose.config-hash"
RECORD = STATE / "redis-networks.json"  # {container id: [short network names Redis was created with]}


def _redis() -> dict | None:
    out = probe(["docker", "inspect", INSTANCE.container(naming.REDIS_SERVICE)])
    if out.returncode != 0:
        return None
    found = json.loads(out.stdout)[0]
    return found if found["State"]["Running"] else None


def _short(network: str) -> str:
    prefix = f"{INSTANCE.compose_project}_"
    return network[len(prefix):] if network.startswith(prefix) else network


def _load() -> dict:
    try:
        return json.loads(RECORD.read_text())
    except (OSError, ValueError):
        return {}


def plan(config_hash, doc: dict) -> tuple[dict, list[str], list[str]] | None:
    """(record entry, networks to connect, networks to disconnect) when Redis runs and differs from its definition
    only by networks; None when Compose should converge Redis itself (not running, up to date, or changed otherwise).

    config_hash(doc=None): Compose's configuration hash of Redis, from the generated file or from `doc` instead."""
    redis = _redis()
    if redis is None:
        return None
    label = redis["Config"]["Labels"].get(CONFIG_HASH_LABEL, "")
    wanted = list(doc["services"][naming.REDIS_SERVICE]["networks"])
    attached = sorted(_short(n) for n in redis["NetworkSettings"]["Networks"])
    missing = [n for n in wanted if n not in attached]
    gone = [n for n in attached if n not in wanted]  # a removed tenant's network
    if config_hash() == label:  # its definition is what created it: only live-connected networks may differ
        return ({redis["Id"]: wanted}, missing, gone) if missing or gone else None
    created_with = _load().get(redis["Id"], attached)
    variant = {**doc, "services": {**doc["services"], naming.REDIS_SERVICE: {"networks": created_with}},
               "networks": {**doc["networks"], **{n: {} for n in created_with}}}
    if config_hash(variant) != label:
        return None  # more than networks changed: Compose recreates Redis with all of them
    return {redis["Id"]: created_with}, missing, gone


def connect(entry: dict, missing: list[str], gone: list[str], log=print) -> None:
    """Connect Redis to each missing network (which Compose has created by now) under its service name, and
    disconnect it from the networks of tenants that are gone."""
    redis = INSTANCE.container(naming.REDIS_SERVICE)
    for short in missing:
        run(["docker", "network", "connect", "--alias", naming.REDIS_SERVICE, INSTANCE.network(short), redis],
            what=f"connecting Redis to network {short}")
        log(f"Redis joined network {short} while running (no restart)")
    for short in gone:
        run(["docker", "network", "disconnect", INSTANCE.network(short), redis],
            what=f"disconnecting Redis from network {short}")
        log(f"Redis left network {short} while running (no restart)")
    STATE.mkdir(parents=True, exist_ok=True)
    RECORD.write_text(json.dumps(entry))  # only the running container's: older ids are gone
