"""The deployment model owns every fact once: examples come from its table, instances never overlap,
and no code outside its renderer and the one apply function builds or sends an ACL rule."""
import re
import subprocess

import pytest

from deployment import acl, envs, naming, ports
from deployment.errors import DeploymentError
from deployment.instance import DEFAULT, ROOT, Instance, current


@pytest.mark.parametrize("name,port", [("a", 8001), ("b", 8002)])
def test_committed_tenant_examples_are_exactly_what_the_table_renders(name, port):
    path = ROOT / "envs" / (naming.env_file_name(name) + ".example")
    assert path.read_text() == envs.render_tenant_example(name, port)


def test_committed_redis_example_is_exactly_what_the_table_renders():
    assert (ROOT / "envs" / "redis.env.example").read_text() == envs.render_redis_example()


def test_default_instance_keeps_the_paths_ports_and_names_deployments_always_had():
    inst = Instance(DEFAULT)
    assert (inst.envs, inst.secrets, inst.backups) == (ROOT / "envs", ROOT / "secrets", ROOT / "backups")
    assert inst.tenants_compose_file == ROOT / "compose" / "tenants.generated.yaml"
    assert (inst.block, inst.redis_port, inst.first_web_port, inst.tools_port) == (0, 6380, 8001, 8081)
    assert inst.volume(naming.REDIS_DATA_VOLUME) == "tenantstack_redis-data"
    assert inst.container("redis") == "tenantstack-redis-1"
    assert inst.image("app") == "tenantstack/app:local"


def test_other_instances_live_apart():
    inst = Instance("staging")
    assert inst.home == ROOT / "instances" / "staging"
    assert {inst.envs, inst.secrets, inst.backups} == {inst.home / "envs", inst.home / "secrets", inst.home / "backups"}
    assert inst.image("app") == "tenantstack/app:staging" and inst.volume("x") == "staging_x"


def test_port_blocks_never_overlap():
    blocks = [ports.block_ports(b) for b in range(ports.MAX_BLOCK + 1)]
    seen = set()
    for b in blocks:
        assert not b & seen
        seen |= b
    assert max(seen) <= 65535 and all(ports.block_of_port(p) == 3 for p in ports.block_ports(3))


def test_blocks_are_allocated_once_recorded_and_released(tmp_path, monkeypatch):
    monkeypatch.setenv(ports.STATE_DIR_VAR, str(tmp_path))
    monkeypatch.delenv(ports.THROWAWAY_VAR, raising=False)
    assert ports.claim(DEFAULT, ROOT, default=True) == 0
    first, second = ports.claim("one", ROOT, False), ports.claim("two", ROOT, False)
    assert (first, second) == (1, 2) and ports.claim("one", ROOT, False) == 1
    other_checkout = tmp_path / "other-checkout"
    other_checkout.mkdir()
    with pytest.raises(DeploymentError, match=r"instance 'one' belongs to the checkout at .*: pick another name"):
        ports.claim("one", other_checkout, False)
    ports.release("one")
    assert ports.claim("three", ROOT, False) == 1  # the freed block is reused
    assert set(ports.entries()) == {DEFAULT, "two", "three"}


def test_compose_project_name_that_disagrees_is_refused_in_one_line():
    with pytest.raises(DeploymentError) as exc:
        current({"TENANTSTACK_INSTANCE": "staging", "COMPOSE_PROJECT_NAME": "other"})
    assert str(exc.value) == ("COMPOSE_PROJECT_NAME=other disagrees with instance 'staging' (the instance name is the "
                              "Compose project): unset COMPOSE_PROJECT_NAME, or set TENANTSTACK_INSTANCE=other")
    assert current({"TENANTSTACK_INSTANCE": "staging", "COMPOSE_PROJECT_NAME": "staging"}).name == "staging"
    with pytest.raises(DeploymentError, match="is not a valid instance name"):
        current({"TENANTSTACK_INSTANCE": "Bad_Name"})


def test_bad_instance_name_stops_every_task_with_one_line():
    import os

    env = {**os.environ, "TENANTSTACK_INSTANCE": "Bad_Name"}
    proc = subprocess.run([str(ROOT / "invoke"), "ps"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: TENANTSTACK_INSTANCE='Bad_Name' is not a valid instance name: use a lowercase letter, "
        "then up to 30 lowercase letters, digits or dashes"]


def test_every_rule_starts_with_reset_and_the_auth_file_round_trips():
    redis_env = envs.redis_values(secret=lambda k: f"pw-{k}")
    tenants = {"a": {"REDIS_PASSWORD": "pa"}, "b": {"REDIS_PASSWORD": "pb"}}
    rules = acl.rules(redis_env, tenants)
    assert set(rules) == {acl.HEALTH_USER, acl.COMMANDER_USER, "tenant-a", "tenant-b"}
    assert all(rule[0] == "reset" for rule in rules.values())
    assert acl.parse_users(acl.auth_conf(redis_env, tenants)) == rules


ACL_WRITERS = {"deployment/acl.py", "ops/secrets/acl.py"}
ACL_SIGNS = re.compile(r"SETUSER|DELUSER|resetchannels|resetkeys|[\"']user [^\"']*\bon >")


def test_no_code_outside_the_renderer_and_apply_builds_or_sends_an_acl_rule():
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    product = [f for f in files if f.endswith((".py", ".sh", ".js", ".conf")) and not f.startswith("tests/")
               and "node_modules" not in f]
    offenders = [f for f in product if f not in ACL_WRITERS and ACL_SIGNS.search((ROOT / f).read_text())]
    assert product and not offenders
