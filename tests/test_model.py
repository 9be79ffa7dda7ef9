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


def test_committed_monitoring_example_is_exactly_what_the_table_renders():
    assert (ROOT / "envs" / "monitoring.env.example").read_text() == envs.render_monitoring_example()
    assert not [s.name for s in envs.MONITORING_SETTINGS if s.secret]  # thresholds only: readable, never rotated


def test_monitoring_users_read_only_their_tenants_two_keys_and_passwords_differ():
    redis_env = envs.redis_values(secret=lambda k: f"pw-{k}")
    rules = acl.rules(redis_env, {"a": {"REDIS_PASSWORD": "pa"}, "b": {"REDIS_PASSWORD": "pb"}})
    a = rules["tenant-a-metrics"]
    assert [r for r in a if "~" in r] == ["%R~tenant-a:tenant-a", "%R~tenant-a:unacked"]
    assert [r for r in a if r.startswith("&")] == ["&tenant-a:/0.celeryev/worker.*"]
    assert "-@all" in a and not [r for r in a if r.startswith("+@")]
    exporter = rules[acl.EXPORTER_USER]
    assert not [r for r in exporter if "~" in r or r.startswith("&") or "config" in r or "eval" in r]
    passwords = {r[2] for u, r in rules.items() if u in (acl.EXPORTER_USER, "tenant-a-metrics", "tenant-b-metrics")}
    assert len(passwords) == 3 and all(len(p) == 65 for p in passwords)  # ">" + 64 hex digits


def test_monitoring_ports_join_every_block_without_collisions():
    for block in (0, 1, ports.MAX_BLOCK):
        off = block * ports.STRIDE
        assert {ports.PROMETHEUS_BASE + off, ports.ALERTMANAGER_BASE + off} <= ports.block_ports(block)
        low, high = ports.block_range(block)
        assert low <= ports.PROMETHEUS_BASE + off < ports.ALERTMANAGER_BASE + off <= high <= 65535


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
    assert set(rules) == {acl.HEALTH_USER, acl.COMMANDER_USER, acl.EXPORTER_USER, "tenant-a", "tenant-b",
                          "tenant-a-metrics", "tenant-b-metrics"}
    assert all(rule[0] == "reset" for rule in rules.values())
    assert acl.parse_users(acl.auth_conf(redis_env, tenants)) == rules


def test_a_rotation_keeps_the_previous_password_as_its_digest_only():
    import hashlib

    redis_env = envs.redis_values(secret=lambda k: f"pw-{k}")
    tenants = {"a": {"REDIS_PASSWORD": "pa"}, "b": {"REDIS_PASSWORD": "new-b"}}
    digest = hashlib.sha256(b"old-b").hexdigest()
    rules = acl.rules(redis_env, tenants, previous={"tenant-b": (digest,)})
    assert rules["tenant-b"][:4] == ["reset", "on", ">new-b", f"#{digest}"]
    assert rules["tenant-a"] == acl.rules(redis_env, tenants)["tenant-a"]  # no other user changes
    conf = acl.auth_conf(redis_env, tenants, previous={"tenant-b": (digest,)})
    assert "old-b" not in conf and acl.parse_users(conf) == rules
    # the digest of the current password itself is never added twice
    assert acl.rules(redis_env, tenants, previous={"tenant-b": (acl.password_hash("new-b"),)})["tenant-b"][3][0] == "~"


ACL_WRITERS = {"deployment/acl.py", "ops/secrets/acl.py"}
ACL_SIGNS = re.compile(r"SETUSER|DELUSER|resetchannels|resetkeys|[\"']user [^\"']*\bon >")


def test_no_code_outside_the_renderer_and_apply_builds_or_sends_an_acl_rule():
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    product = [f for f in files if f.endswith((".py", ".sh", ".js", ".conf")) and not f.startswith("tests/")
               and "node_modules" not in f]
    offenders = [f for f in product if f not in ACL_WRITERS and ACL_SIGNS.search((ROOT / f).read_text())]
    assert product and not offenders


def test_each_tenant_and_operator_service_has_a_network_name_of_its_own():
    names = [naming.tenant_network(t) for t in ("a", "b", "c")] + [naming.TOOLS_NETWORK]
    assert len(set(names)) == len(names)
    assert naming.TOOLS_NETWORK == naming.operator_network(naming.TOOLS_SERVICE) != naming.tenant_network("ops")
    assert naming.tenant_of(naming.TOOLS_NETWORK) is None  # an operator network belongs to no tenant
    # A tenant's metrics exporter is the tenant's (restore stops and restarts it with the tenant's services).
    assert naming.tenant_of(naming.metrics_service("b")) == naming.tenant_of(naming.metrics_user("b")) == "b"


def test_every_secret_row_reaches_the_containers_as_a_file_only():
    assert all(s.as_file for s in envs.TENANT_SETTINGS if s.secret)
    assert naming.secret_file_var("REDIS_PASSWORD") == "REDIS_PASSWORD_FILE"
    assert naming.secret_file_name("REDIS_PASSWORD") == "redis_password"


def test_bad_limits_are_named_with_their_fix_and_absent_ones_take_defaults():
    values = {**envs.tenant_values("a", 8001, secret=lambda k: "x" * 40), "WEB_CPUS": "lots", "WORKER_CPUS": "0",
              "PIDS_LIMIT": "10"}
    del values["BEAT_MEMORY_MB"]  # an env file written before the limit rows existed
    found = envs.problems(envs.TENANT_SETTINGS, values)
    assert found == ["WEB_CPUS='lots' is not a number: set it to a number of cores, e.g. 1.0",
                     "WORKER_CPUS=0 is out of range 0.01..256: set it to a number of cores, e.g. 1.5",
                     "PIDS_LIMIT=10 is out of range 32..65536: set it to a whole number of processes, e.g. 256"]
    assert envs.value_of(envs.TENANT["BEAT_MEMORY_MB"], values) == "256"
def test_tenant_rules_grant_exact_commands_no_category_and_only_kombu_scripts():
    from deployment import lua

    rule = acl.tenant_rule("a", {"REDIS_PASSWORD": "p"})
    grants = [t for t in rule if t.startswith("+")]
    assert rule[rule.index("-@all") + 1:] == grants  # nothing before the list, nothing after it
    assert not [g for g in grants if "@" in g]
    assert {g for g in grants if g.startswith("+evalsha")} == {f"+evalsha|{sha}" for sha in lua.kombu_scripts()}
    assert not {"+evalsha", "+script|load", "+eval", "+client|tracking", "+select", "+copy", "+client"} & set(grants)
    health = acl.rules(envs.redis_values(secret=lambda k: "x"), {})[acl.HEALTH_USER]
    assert [t for t in health if t.startswith(("+", "-"))] == ["-@all", "+ping", "+auth", "+hello", "+script|load"]


def test_kombu_scripts_are_read_from_the_installed_kombu_and_load_exactly():
    from kombu.transport import redis as transport

    from deployment import lua

    scripts = lua.kombu_scripts()
    assert {transport.REFRESH_BINDING, transport.SWEEP_BINDINGS} <= set(scripts.values())
    assert lua.load_expectation(scripts).split() == [*scripts, "PONG"]
    assert len(lua.load_commands(scripts).splitlines()) == len(scripts) + 1  # one line per script, then PING


def test_declared_channel_patterns_stay_inside_the_tenant_prefix():
    patterns = naming.acl_channel_patterns("a", broadcast_queues=["reload"], event_routing_keys=["task.#"])
    assert patterns == ["tenant-a:*", "tenant-a:/0.celery.pidbox", "tenant-a:/0.reload", "tenant-a:/0.reload/tenant-a",
                        "tenant-a:/0.celeryev/*", "tenant-a:/0.celeryev/worker.*", "tenant-a:/0.celeryev/task.*"]
    rule = acl.tenant_rule("a", {"REDIS_PASSWORD": "p", "CELERY_BROADCAST_QUEUES": "reload",
                                 "CELERY_EVENT_ROUTING_KEYS": "task.#"})
    assert [t[1:] for t in rule if t.startswith("&")] == patterns


@pytest.mark.parametrize("name,value", [("CELERY_BROADCAST_QUEUES", "reload,x ~* +@all"),
                                        ("CELERY_EVENT_ROUTING_KEYS", "task.# *")])
def test_a_bad_declaration_is_one_line_and_never_rendered(name, value):
    values = {**envs.tenant_values("a", 8001, secret=lambda k: "x"), name: value}
    bad = value.split(",")[-1] if name == "CELERY_BROADCAST_QUEUES" else value
    assert envs.problems(envs.TENANT_SETTINGS, values) == [
        f"{name} has invalid item {bad!r}: {envs.TENANT[name].fix}"]
    with pytest.raises(ValueError, match="invalid item"):
        acl.tenant_rule("a", {"REDIS_PASSWORD": "p", name: value})


def test_maxmemory_is_rendered_from_the_budget_and_defaults_for_older_env_files():
    redis_env = envs.redis_values(secret=lambda k: "x")
    assert "maxmemory 1024mb" in acl.auth_conf(redis_env, {}).splitlines()
    assert "maxmemory 2048mb" in acl.auth_conf({**redis_env, "REDIS_MAXMEMORY_MB": "2048"}, {}).splitlines()
    older = {k: v for k, v in redis_env.items() if k != "REDIS_MAXMEMORY_MB"}
    assert "maxmemory 1024mb" in acl.auth_conf(older, {}).splitlines()
    assert envs.problems(envs.REDIS_SETTINGS, {**redis_env, "REDIS_MAXMEMORY_MB": "10"}) == [
        "REDIS_MAXMEMORY_MB=10 is out of range 64..1048576: set it to a number of megabytes, e.g. 1024"]


def test_every_project_dockerfile_in_the_repository_is_the_template():
    """The example and the fixture project build exactly as the README tells a tenant to: the template, copied."""
    template = (ROOT / "app" / "project-template" / "Dockerfile").read_text()
    for copy in (ROOT / "app" / "example" / "Dockerfile", ROOT / "tests/fixtures/projects/shop/Dockerfile"):
        assert copy.read_text() == template, f"{copy} differs from app/project-template/Dockerfile: copy it again"
