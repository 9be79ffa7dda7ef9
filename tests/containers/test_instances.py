"""The suite's own instance is apart from every other: its names, ports and files, and refusals at the edges."""
import os
import subprocess

import pytest

from deployment import naming, ports
from deployment.instance import DEFAULT
from ops.config.envfile import read_env, rel
from ops.config.paths import INSTANCE, ROOT
from ops.config.tenants import env_path
from ops.core.errors import OpsError
from ops.deploy import instances
from tests.support import deployment as d

pytestmark = pytest.mark.usefixtures("tenants_up")


def test_the_suite_runs_on_a_throwaway_instance_with_its_own_block():
    assert INSTANCE.name != DEFAULT and INSTANCE.block != 0
    entry = ports.entries()[INSTANCE.name]
    assert entry["block"] == INSTANCE.block and entry["owner_pid"] and entry["root"] == str(ROOT)
    assert INSTANCE.home == ROOT / "instances" / INSTANCE.name


def test_every_engine_object_of_the_instance_carries_its_name_and_publishes_inside_its_block():
    found = instances.engine_objects(INSTANCE.name)
    assert found["container"] and found["volume"] and found["network"]
    low, high = ports.block_range(INSTANCE.block)
    for cid in found["container"]:
        info = d.inspect(cid)
        assert info["Name"].lstrip("/").startswith(f"{INSTANCE.name}-")
        assert info["Config"]["Image"].endswith(f":{INSTANCE.image_tag}")
        for bindings in (info["HostConfig"]["PortBindings"] or {}).values():
            for b in bindings or []:  # an exposed, unpublished port has no bindings
                assert b["HostIp"] == "127.0.0.1" and low <= int(b["HostPort"]) <= high, (info["Name"], b)
        for m in info["Mounts"]:
            if m["Type"] == "bind" and m["Source"].startswith(str(ROOT)):
                assert m["Source"].startswith((str(INSTANCE.home), str(ROOT / "redis"))), m["Source"]
    assert all(v.startswith(f"{INSTANCE.name}_") for v in found["volume"])


def test_a_port_in_another_instances_block_is_refused_in_one_line():
    path = env_path("b")
    original = path.read_text()
    foreign = 8002  # block 0: always the default instance's
    try:
        path.write_text(original.replace(f"WEB_PORT={read_env(path)['WEB_PORT']}", f"WEB_PORT={foreign}"))
        proc = d.invoke("up", "--tenant", "b", check=False)
        low, high = ports.block_range(INSTANCE.block)
        assert proc.returncode == 2
        assert proc.stderr.strip().splitlines() == [
            f"error: port {foreign} (WEB_PORT in {rel(path)}) is in instance {DEFAULT}'s port block: "
            f"use a port of instance {INSTANCE.name}'s block {low}-{high}"]
    finally:
        path.write_text(original)


def test_compose_project_name_disagreeing_with_the_instance_is_refused():
    env = {**os.environ, "COMPOSE_PROJECT_NAME": "someone-else"}
    proc = subprocess.run([d.INVOKE, "ps"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("error: COMPOSE_PROJECT_NAME=someone-else disagrees with instance "
                                   f"'{INSTANCE.name}' "
                                   "(the instance name is the Compose project): unset COMPOSE_PROJECT_NAME, "
                                   "or set TENANTSTACK_INSTANCE=someone-else")


def test_the_default_instance_cannot_be_removed_by_instance_remove():
    proc = d.invoke("instance-remove", DEFAULT, "--yes", check=False)
    assert proc.returncode == 2 and proc.stderr.startswith(f"error: instance {DEFAULT} is the default one")


def test_tenant_names_derive_from_one_prefix():
    assert {naming.tenant_of(naming.service_name("a", r)) for r in naming.ROLES} == {"a"}
    assert naming.tenant_of(naming.REDIS_SERVICE) is None and naming.tenant_of(naming.redis_user("b")) == "b"


def test_a_checkout_cannot_act_on_an_instance_another_checkout_started(monkeypatch, tmp_path):
    """Two clones share the default instance's name: the second one's `up`/`down` must not take over the first's.

    Real containers, real Compose labels: this process plays a second checkout (its compose/ folder elsewhere)
    and asks Compose for the suite's instance, whose containers this checkout started.
    """
    from ops.deploy import compose

    other = tmp_path / "other-checkout" / "compose"
    other.mkdir(parents=True)
    monkeypatch.setattr(compose, "COMPOSE_DIR", other)
    monkeypatch.setattr(compose, "_OWNED", set())
    with pytest.raises(OpsError) as refused:
        compose.run("ps", quiet=True, capture=True)
    assert str(refused.value) == (
        f"instance {INSTANCE.name}'s containers were started from the checkout at {ROOT}: run this task there "
        "(or `./invoke down` there first); another checkout on this host needs an instance of its own: "
        "TENANTSTACK_INSTANCE=<name> ./invoke ...")
    # The checkout that started them is asked nothing and goes on; one deleted since owns nothing any more.
    monkeypatch.setattr(compose, "COMPOSE_DIR", ROOT / "compose")
    assert compose.run("ps", quiet=True, capture=True).returncode == 0
    assert compose.foreign_checkouts({str(tmp_path / "deleted-clone" / "compose")}, other) == []
