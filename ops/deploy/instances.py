"""Instances on this host: list them, remove one whole, and sweep throwaway ones whose owner died.

Removal works from the engine's own labels (com.docker.compose.project), not from compose files, so
it also cleans an instance whose checkout or generated files are gone. It never touches the default
instance: that one holds the operator's data, and `./invoke down --volumes --yes` is the explicit way.
"""
import shutil
from pathlib import Path

from deployment import ports
from deployment.instance import BENCH_COMPONENT, COMPONENTS, DEFAULT, PROJECT_LABEL, ROOT, Instance, check_name
from ops.core.errors import OpsError
from ops.core.run import probe, run
from ops.deploy.containers import JOB_INSTANCE_LABEL


def _ids(kind: str, name: str, label: str = PROJECT_LABEL) -> list[str]:
    argv = {"container": ["docker", "ps", "-a", "-q"], "volume": ["docker", "volume", "ls", "-q"],
            "network": ["docker", "network", "ls", "-q"]}[kind]
    out = probe([*argv, "--filter", f"label={label}={name}"])
    return out.stdout.split() if out.returncode == 0 else []


def engine_objects(name: str) -> dict[str, list[str]]:
    found = {kind: _ids(kind, name) for kind in ("container", "volume", "network")}
    found["container"] += _ids("container", name, JOB_INSTANCE_LABEL)  # volume jobs (not Compose's)
    return found


def remove(name: str, log=print) -> None:
    """Remove every container, volume, network, image tag and file of a non-default instance; release its ports."""
    check_name(name)
    if name == DEFAULT:
        raise OpsError(f"instance {DEFAULT} is the default one and holds your data: stop it with "
                       "`./invoke down`, delete its data with `./invoke down --volumes --yes`")
    inst = Instance(name, root=_root_of(name))
    if probe(["docker", "version", "--format", "{{.Server.Version}}"]).returncode != 0:
        # Nothing could be listed, so nothing would be removed: keep the record (ports, root) so that a
        # later run, with the engine back, removes what is left instead of forgetting it.
        raise OpsError(f"instance {name}: the container engine does not answer, so its containers and volumes "
                       f"cannot be removed; it stays on record: run `./invoke instance-remove {name} --yes` (or "
                       "the next `./invoke test`) once the engine answers")
    found = engine_objects(name)
    if found["container"]:
        run(["docker", "rm", "-f", "-v", *found["container"]], what=f"removing instance {name}'s containers")
    if found["volume"]:
        run(["docker", "volume", "rm", "-f", *found["volume"]], what=f"removing instance {name}'s volumes")
    if found["network"]:  # no -f: Docker Engine 20.10's CLI has none for networks
        run(["docker", "network", "rm", *found["network"]], what=f"removing instance {name}'s networks")
    tags = [inst.image(c) for c in (*COMPONENTS, BENCH_COMPONENT)]  # a bench run killed outright leaves its image
    present = [t for t in tags if probe(["docker", "image", "inspect", t]).returncode == 0]
    listed = probe(["docker", "images", "--filter", f"reference={inst.tenant_image_reference()}", "--format",
                    "{{.Repository}}:{{.Tag}}"])  # each tenant project's image
    present += sorted(set(listed.stdout.split())) if listed.returncode == 0 else []
    if present:  # only the instance's tags: layers shared with other instances stay
        probe(["docker", "rmi", *present])  # a tag still used by a leftover container stays: harmless
    if inst.home.is_dir() and inst.home != inst.root:
        shutil.rmtree(inst.home, ignore_errors=True)
    ports.release(name)
    log(f"instance {name}: removed {len(found['container'])} containers, {len(found['volume'])} volumes, "
        f"{len(found['network'])} networks, {len(present)} image tags and {inst.home}")


def _root_of(name: str) -> Path:
    root = ports.entries().get(name, {}).get("root")
    return Path(root) if root else ROOT


def sweep_abandoned(log=print) -> list[str]:
    """Remove throwaway instances (test runs) whose owning process is gone."""
    names = ports.abandoned_throwaways()
    for name in names:
        log(f"instance {name}: its test run is gone; removing what it left")
        remove(name, log)
    return names


def listing() -> list[str]:
    rows = []
    for name, entry in sorted(ports.entries().items(), key=lambda kv: kv[1].get("block", 0)):
        low, high = ports.block_range(entry.get("block", 0))
        running = len(_ids("container", name))
        kind = "throwaway" if entry.get("owner_pid") else "default" if name == DEFAULT else "named"
        rows.append(f"{name:<24} block {entry.get('block', 0):>2}  ports {low}-{high}  {kind:<9} "
                    f"{running} containers  {entry.get('root') or '(this checkout)'}")
    return rows
