"""Redis roles (REDIS_ROLES): each declared role works through the real client libraries, and only when declared.

One server for the module: tenant a declares every role (broker,cache,results,pubsub), tenant b only the broker.
The happy paths run the clients tenantstack/roles.py configures, never raw redis-py: Django's cache API and sessions
through TenantRedisCache (in a subprocess with its own settings.configure), Celery's Redis result backend with a real
prefork worker (AsyncResult.get() over pub/sub, a group, chords), the pub/sub client on app channels. The suite's
check that legitimate traffic leaves the ACL LOG empty (tests/conftest.py) covers them: the fixture below is named
`local_redis` so that check reads this module's server. Tests marked `attacks` send what must be refused.
"""
import importlib.util
import json
import os
import socket
import time

import pytest

from deployment import acl, envs, lua, naming
from tenantstack import env, roles
from tests.app.hostile import refused
from tests.app.processes import AppProcess, run, tenant_env
from tests.support import local_redis as _local_redis

ALL_ROLES = "broker,cache,results,pubsub"
A, B = naming.key_prefix("a"), naming.key_prefix("b")

# The tenant's Celery app as the glue builds it (celery_config.celery_settings) plus the results role, with a few
# tasks; the worker imports it as `roles_app`, the test process builds the same app from its own Config.
WORKER_APP = '''
import os

from celery import Celery

from tenantstack import env, roles
from tenantstack.celery_config import celery_settings


def make_app(config):
    app = Celery(f"roles-{config.tenant}", set_as_current=False)
    app.conf.update({**celery_settings(config), **roles.celery_result_settings(config)})

    @app.task(name="roles.add")
    def add(x, y):
        return x + y

    @app.task(name="roles.fail")
    def fail(message):
        raise RuntimeError(message)

    @app.task(name="roles.total")
    def total(values):
        return sum(values)

    @app.task(name="roles.grow", bind=True)
    def grow(self, x):
        self.add_to_chord(add.s(x, 100))  # INCRBY on the chord's counter
        self.update_state(state="PROGRESS", meta={"x": x})
        return x

    return app


if os.environ.get("ROLES_APP_WORKER"):  # the worker process; the test process builds its app from its own Config
    app = make_app(env.read_config(os.environ))
'''

# Django's cache API and sessions with the settings roles.py gives; prints what it saw as one JSON line.
CACHE_CLIENT = '''
import json
import os

import django
from django.conf import settings

from tenantstack import env, roles

config = env.read_config(os.environ)
settings.configure(CACHES=roles.django_caches(config), SECRET_KEY="s" * 50, USE_TZ=True,
                   INSTALLED_APPS=["django.contrib.sessions"], **roles.session_settings(config))
django.setup()
from django.contrib.sessions.backends.cache import SessionStore
from django.core.cache import cache, caches

seen = {"class": type(caches["default"]).__qualname__}
cache.set("k", {"v": 1})
seen["get"] = cache.get("k")
seen["add_existing"] = cache.add("k", 2)
seen["add_new"] = cache.add("new", 2, timeout=30)
cache.set("n", 1)
seen["incr"] = cache.incr("n")
seen["decr"] = cache.decr("n", 2)
cache.set_many({"a": 1, "b": "x"}, timeout=60)
seen["get_many"] = cache.get_many(["a", "b", "missing"])
seen["has_key"] = cache.has_key("a")
seen["touch"] = cache.touch("a", 10)
seen["get_or_set"] = cache.get_or_set("g", lambda: 5)
seen["incr_version"] = cache.incr_version("b")
cache.delete_many(["a"])
seen["deleted"] = cache.delete("k")
seen["after_delete"] = cache.get("k", "gone")
session = SessionStore()
session["user"] = 42
session.save()
loaded = SessionStore(session_key=session.session_key)
seen["session"] = loaded["user"]
seen["session_exists"] = loaded.exists(session.session_key)
seen["session_key"] = session.session_key
for name, call in (("timeout_none", lambda: cache.set("forever", 1, timeout=None)),
                   ("touch_none", lambda: cache.touch("n", None)), ("clear", cache.clear)):
    try:
        call()
        seen[name] = "accepted"
    except (ValueError, NotImplementedError) as exc:
        seen[name] = f"{type(exc).__name__}: {exc}"
print(json.dumps(seen))
'''


@pytest.fixture(scope="module")
def local_redis(tmp_path_factory):
    """This module's server (named like the suite's, so its ACL LOG is checked after each test): a has every role.

    Celery's chord scripts are loaded like kombu's by the server's healthcheck (tenants may EVALSHA them, never load
    them: deployment/lua.py loaded_scripts)."""
    server = _local_redis.start(tmp_path_factory.mktemp("redis-roles"),
                                tenant_settings={"a": {"REDIS_ROLES": ALL_ROLES}})
    server.scripts_loaded_at_start = all(server.client().script_exists(*acl.role_scripts("results")))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def envs_by_tenant(local_redis, tmp_path_factory):
    """Each tenant's environment, without DJANGO_SETTINGS_MODULE: these processes configure only what they test (the
    worker would otherwise load the glue's Django settings through Celery's Django fixup)."""
    return {"a": tenant_env(local_redis, "a", tmp_path_factory.mktemp("roles-a"), REDIS_ROLES=ALL_ROLES,
                            DJANGO_SETTINGS_MODULE=None),
            "b": tenant_env(local_redis, "b", tmp_path_factory.mktemp("roles-b"), DJANGO_SETTINGS_MODULE=None)}


@pytest.fixture(scope="module")
def configs(envs_by_tenant):
    return {t: env.read_config(e) for t, e in envs_by_tenant.items()}


@pytest.fixture(scope="module")
def worker_app_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("roles-app")
    (folder / "roles_app.py").write_text(WORKER_APP)
    return folder


@pytest.fixture(scope="module")
def results_app(local_redis, envs_by_tenant, configs, worker_app_dir, tmp_path_factory):
    """Tenant a's real prefork worker storing results in Redis, and the same Celery app in this process."""
    worker_env = {**envs_by_tenant["a"], "ROLES_APP_WORKER": "1",
                  "PYTHONPATH": os.pathsep.join([envs_by_tenant["a"]["PYTHONPATH"], str(worker_app_dir)])}
    node = f"roles-a@{socket.gethostname()}"
    worker = AppProcess(["-m", "celery", "-A", "roles_app", "worker", "--queues", configs["a"].queue, "--hostname",
                         node, "--concurrency", "2", "--loglevel", "INFO"], worker_env,
                        tmp_path_factory.mktemp("logs") / "roles-worker-a.log", node=node)
    try:
        worker.wait_for_output(f"{node} ready.", timeout=60)
        spec = importlib.util.spec_from_file_location("roles_app_client", worker_app_dir / "roles_app.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)  # no ROLES_APP_WORKER here: only make_app is defined
        app = module.make_app(configs["a"])
        yield app, worker
        app.close()
    finally:
        worker.stop()


def operator_keys(server) -> list[str]:
    return sorted(k.decode() for k in server.client().scan_iter(count=1000))


def grants(rule: list[str]) -> set[str]:
    return {t[1:] for t in rule if t.startswith("+")}


# ---- the rules ----------------------------------------------------------------------------------------------------

def test_each_declared_role_adds_its_commands_and_subscribe_selector_and_only_then():
    broker_only = acl.tenant_rule("b", {"REDIS_PASSWORD": "p"})
    every_role = acl.tenant_rule("a", {"REDIS_PASSWORD": "p", "REDIS_ROLES": ALL_ROLES})
    assert grants(broker_only) == set(acl.TENANT_COMMANDS.split()) | {
        f"evalsha|{sha}" for sha in lua.kombu_scripts()}
    assert not [t for t in broker_only if t.startswith("(")], "SUBSCRIBE comes only with a role"
    assert "subscribe" not in grants(every_role), "never in the root rule: it would reach every channel of a's prefix"
    for role, commands in acl.ROLE_COMMANDS.items():
        alone = acl.tenant_rule("a", {"REDIS_PASSWORD": "p", "REDIS_ROLES": role})
        assert grants(alone) >= set(commands.split())
        assert grants(alone) - grants(broker_only) == (set(commands.split()) - set(acl.TENANT_COMMANDS.split())) | {
            f"evalsha|{sha}" for sha in acl.role_scripts(role)}
        assert [t for t in alone if t.startswith("(")] == (
            [f"(+subscribe &{acl.ROLE_SUBSCRIBE[role]('a')})"] if role in acl.ROLE_SUBSCRIBE else [])
    assert [t for t in every_role if t.startswith("(")] == [f"(+subscribe &{A}celery-task-meta-*)",
                                                            f"(+subscribe &{A}app:*)"]
    assert not [g for g in grants(every_role) if "@" in g or g in {"eval", "scan", "keys", "flushdb", "flushall",
                                                                   "persist", "script|load", "evalsha"}]
    # The auth file round-trips with selectors (each one item), as ops/secrets/acl.py compares rules.
    redis_env = envs.redis_values(secret=lambda k: f"pw-{k}")
    settings = {"a": {"REDIS_PASSWORD": "pa", "REDIS_ROLES": ALL_ROLES}, "b": {"REDIS_PASSWORD": "pb"}}
    assert acl.parse_users(acl.auth_conf(redis_env, settings)) == acl.rules(redis_env, settings)
    with pytest.raises(ValueError, match="REDIS_ROLES"):
        acl.tenant_rule("a", {"REDIS_PASSWORD": "p", "REDIS_ROLES": "cache,~* +@all"})


def test_the_server_holds_the_rendered_selectors(local_redis):
    """The auth file's selectors reach Valkey as rendered: one SUBSCRIBE-only selector per role, none for b."""
    rules = {line.split()[1]: line for line in local_redis.client().acl_list()}
    selectors = [f"(resetchannels &{pattern('a')} -@all +subscribe)" for pattern in acl.ROLE_SUBSCRIBE.values()]
    assert all(s in rules[naming.redis_user("a")] for s in selectors), rules[naming.redis_user("a")]
    assert "(" not in rules[naming.redis_user("b")]


def test_a_rule_with_selectors_applies_live_and_reset_takes_them_away(local_redis):
    """As ops/secrets/acl.py applies a changed rule: ACL SETUSER with the rule's items, a selector as one argument."""
    operator, user = local_redis.client(), naming.redis_user("b")
    settings = {"REDIS_PASSWORD": local_redis.tenant_passwords["b"]}
    try:
        operator.execute_command("ACL", "SETUSER", user, *acl.tenant_rule("b", {**settings, "REDIS_ROLES": ALL_ROLES}))
        assert f"(resetchannels &{B}app:* -@all +subscribe)" in next(r for r in operator.acl_list() if f" {user} " in r)
    finally:
        operator.execute_command("ACL", "SETUSER", user, *acl.tenant_rule("b", settings))
    assert "(" not in next(r for r in operator.acl_list() if f" {user} " in r)


def test_the_healthcheck_loads_every_role_script(local_redis):
    assert local_redis.scripts_loaded_at_start


# ---- cache --------------------------------------------------------------------------------------------------------

def test_django_cache_and_sessions_run_through_tenant_redis_cache_under_the_prefix(local_redis, envs_by_tenant):
    done = run(["-c", CACHE_CLIENT], envs_by_tenant["a"])
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["class"] == "TenantRedisCache"
    assert (seen["get"], seen["add_existing"], seen["add_new"], seen["incr"], seen["decr"]) == ({"v": 1}, False,
                                                                                               True, 2, 0)
    assert seen["get_many"] == {"a": 1, "b": "x"} and seen["has_key"] and seen["touch"]
    assert (seen["get_or_set"], seen["incr_version"], seen["deleted"], seen["after_delete"]) == (5, 2, True, "gone")
    assert (seen["session"], seen["session_exists"]) == (42, True)
    assert seen["timeout_none"] == seen["touch_none"] == f"ValueError: cache timeout None: {roles.NO_TIMEOUT}"
    assert seen["clear"] == f"NotImplementedError: {roles.NO_CLEAR}"
    cache_keys = [k for k in operator_keys(local_redis) if ":cache:" in k]
    assert f"{A}cache:1:django.contrib.sessions.cache{seen['session_key']}" in cache_keys
    assert {f"{A}cache:1:n", f"{A}cache:2:b", f"{A}cache:1:g", f"{A}cache:1:new"} <= set(cache_keys)
    assert all(k.startswith(f"{A}cache:") for k in cache_keys), cache_keys
    operator = local_redis.client()
    assert all(operator.ttl(k) > 0 for k in cache_keys), "every cache entry expires"


def test_tenant_redis_cache_refuses_no_timeout_in_settings_and_calls_before_sending_anything():
    from tenantstack.roles import TenantRedisCache

    with pytest.raises(ValueError, match="^CACHES TIMEOUT is None: every cache entry needs a timeout"):
        TenantRedisCache("rediss://127.0.0.1:1/0", {"TIMEOUT": None})
    cache = TenantRedisCache("rediss://127.0.0.1:1/0", {"KEY_PREFIX": "tenant-a:cache"})  # port 1: nothing listens
    for call in (lambda: cache.set("k", 1, timeout=None), lambda: cache.add("k", 1, timeout=None),
                 lambda: cache.touch("k", None), lambda: cache.set_many({"k": 1}, timeout=None)):
        with pytest.raises(ValueError, match="on the shared Redis an entry without one stays forever"):
            call()
    with pytest.raises(NotImplementedError, match="FLUSHDB"):
        cache.clear()
    assert cache.make_key("k") == "tenant-a:cache:1:k"


# ---- results ------------------------------------------------------------------------------------------------------

def test_celery_results_groups_and_chords_live_under_the_prefix(local_redis, results_app):
    from celery import chord, group
    from celery.result import GroupResult

    app, worker = results_app
    add, fail, total, grow = (app.tasks[f"roles.{n}"] for n in ("add", "fail", "total", "grow"))
    result = add.delay(2, 3)
    assert result.get(timeout=30) == 5  # over pub/sub: SUBSCRIBE <prefix>celery-task-meta-<id>
    assert result.ready() and result.state == "SUCCESS" and result.successful()
    failed = fail.delay("boom")
    assert isinstance(failed.get(timeout=30, propagate=False), RuntimeError) and failed.state == "FAILURE"
    result.forget()
    assert result.state == "PENDING"
    many = group(add.s(i, i) for i in range(4)).apply_async()
    assert many.get(timeout=30) == [0, 2, 4, 6]
    many.save()
    restored = GroupResult.restore(many.id, app=app)
    assert restored.join(timeout=30) == restored.join_native(timeout=30) == [0, 2, 4, 6]
    restored.delete()
    assert GroupResult.restore(many.id, app=app) is None
    assert chord(add.s(i, 1) for i in range(3))(total.s()).get(timeout=60) == 6
    assert chord([group(add.s(1, 1), add.s(2, 2)), add.s(3, 3)])(total.s()).get(timeout=60) == 12
    assert chord([grow.s(1), add.s(2, 2)])(total.s()).get(timeout=60) == 1 + 4 + 101  # Task.add_to_chord
    assert "NoPermission" not in worker.output() and "NOPERM" not in worker.output(), worker.output()[-3000:]
    keys = operator_keys(local_redis)
    results = [k for k in keys if "celery-" in k]
    assert results and all(k.startswith(f"{A}celery-task-meta-") or k.startswith(f"{A}celery-taskset-meta-")
                           for k in results), results
    assert f"{A}celery-task-meta-{failed.id}" in results
    assert all(k.startswith((A, B)) for k in keys), f"a key outside every tenant's prefix: {keys}"
    operator = local_redis.client()
    assert all(operator.ttl(k) > 0 for k in results), "every result, group and chord key expires"


# ---- pubsub -------------------------------------------------------------------------------------------------------

def test_pubsub_role_publishes_and_subscribes_on_app_channels(configs):
    channel = roles.app_channel(configs["a"], "news")
    assert channel == f"{A}app:news"
    listener, speaker = roles.pubsub_client(configs["a"]), roles.pubsub_client(configs["a"])
    p = listener.pubsub(ignore_subscribe_messages=True)
    p.subscribe(channel)
    deadline, message = time.monotonic() + 10, None
    while message is None and time.monotonic() < deadline:
        speaker.publish(channel, "hello")
        message = p.get_message(timeout=0.5)
    assert message and (message["channel"], message["data"]) == (channel.encode(), b"hello")
    p.unsubscribe(channel)
    p.close()
    listener.close()
    speaker.close()


# ---- what a project's own settings need ---------------------------------------------------------------------------

def test_user_settings_that_need_an_undeclared_or_unsupported_role_are_named_with_their_fix(configs):
    a, b = configs["a"], configs["b"]
    redis_cache = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://x"}}
    django_redis = {"default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": "redis://x"}}
    channels = {"CHANNEL_LAYERS": {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer"}}}
    assert roles.problems_with_user_settings(b, {"CACHES": redis_cache}, {}) == [
        "CACHES['default'] uses Redis (django.core.cache.backends.redis.RedisCache) but the tenant does not declare "
        "the cache role: add cache to REDIS_ROLES in envs/tenant-b.env"]
    assert roles.problems_with_user_settings(b, {}, {"result_backend": "rediss://u:p@h:1/0"}) == [
        "Celery's result_backend is Redis but the tenant does not declare the results role: add results to "
        "REDIS_ROLES in envs/tenant-b.env"]
    assert roles.problems_with_user_settings(b, {"CELERY_RESULT_BACKEND": "redis://h"}, {"result_backend": None})
    assert "django-redis" in roles.problems_with_user_settings(a, {"CACHES": django_redis}, {})[0]
    assert "channels_redis" in roles.problems_with_user_settings(a, channels, {})[0]
    assert "TIMEOUT None" in roles.problems_with_user_settings(
        a, {"CACHES": {"default": {**redis_cache["default"], "TIMEOUT": None}}}, {})[0]
    assert "on its own: the deployment configures only CACHES['default']" in roles.problems_with_user_settings(
        a, {"CACHES": {**redis_cache, "other": redis_cache["default"]}}, {})[0]
    # Declared, or not Redis at all: nothing to say.
    assert roles.problems_with_user_settings(a, {"CACHES": redis_cache}, {"result_backend": "rediss://h"}) == []
    locmem = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    assert roles.problems_with_user_settings(b, {"CACHES": locmem}, {"result_backend": "django-db"}) == []


def test_role_builders_refuse_a_role_the_tenant_did_not_declare(configs):
    for build in (roles.django_caches, roles.session_settings, roles.celery_result_settings, roles.pubsub_client):
        with pytest.raises(ValueError, match="tenant b does not declare the .* role .*add .* to REDIS_ROLES in "
                                             "envs/tenant-b.env"):
            build(configs["b"])


def test_roles_imports_neither_django_nor_celery_nor_redis(envs_by_tenant):
    done = run(["-c", "import sys; import tenantstack.roles; print(sorted(m for m in sys.modules if m.split('.')[0] "
                      "in {'django', 'celery', 'kombu', 'redis'}))"], envs_by_tenant["a"])
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr


# ---- attacks ------------------------------------------------------------------------------------------------------


@pytest.mark.attacks
def test_tenant_with_every_role_reaches_nothing_outside_its_prefix_and_roles(local_redis):
    operator = local_redis.client()
    operator.set(f"{B}cache:1:k", "b's entry", ex=300)
    a = local_redis.tenant_client("a", protocol=3, single_connection_client=True)
    chord_part_return = next(sha for sha, s in acl.role_scripts("results").items() if "SISMEMBER" in s)
    for command in [("GET", f"{B}cache:1:k"), ("SET", f"{B}cache:1:k", "x", "EX", "60"), ("MGET", f"{B}cache:1:k"),
                    ("INCRBY", f"{B}cache:1:n", "1"), ("SET", "k", "x", "EX", "60"),
                    ("SETEX", "celery-task-meta-x", "60", "x"), ("SUBSCRIBE", f"{B}celery-task-meta-x"),
                    ("SUBSCRIBE", f"{B}app:x"), ("SUBSCRIBE", "celery-task-meta-x"),
                    # a's own channels outside its roles' patterns: SUBSCRIBE is confined to them
                    ("SUBSCRIBE", f"{A}/0.celery.pidbox"), ("SUBSCRIBE", f"{A}celery-taskset-meta-x"),
                    ("PSUBSCRIBE", "*"), ("PSUBSCRIBE", f"{A}app:*"), ("PSUBSCRIBE", f"{A}celery-task-meta-*"),
                    ("PUBLISH", f"{B}app:x", "x"), ("PUBLISH", f"{B}celery-task-meta-x", "x"),
                    ("EVAL", "return 1", "0"), ("SCRIPT", "LOAD", "return 1"), ("SCAN", "0"), ("KEYS", "*"),
                    ("FLUSHDB",), ("FLUSHALL",), ("PERSIST", f"{A}cache:1:n"),
                    ("EVALSHA", chord_part_return, "6", *[f"{B}celery-taskset-meta-x.{s}" for s in "jtsd"],
                     f"{B}celery-taskset-meta-x", f"{B}celery-taskset-meta-x.c", "t", "v", "1", "1", "0", "0", "10",
                     "tok")]:
        refused(a, *command)
    assert operator.get(f"{B}cache:1:k") == b"b's entry"
    assert operator.exists("k", "celery-task-meta-x") == 0
    a.close()


@pytest.mark.attacks
def test_tenant_without_the_roles_gets_none_of_their_commands(local_redis):
    b = local_redis.tenant_client("b", protocol=3, single_connection_client=True)
    added = {c for role in ("cache", "results", "pubsub") for c in acl.ROLE_COMMANDS[role].split()}
    added -= set(acl.TENANT_COMMANDS.split())
    assert added == {"expire", "incrby", "mget", "mset", "setex", "sismember", "zcount", "unsubscribe"}
    for command in [("INCRBY", f"{B}cache:1:n", "1"), ("MGET", f"{B}cache:1:k"), ("MSET", f"{B}cache:1:k", "x"),
                    ("EXPIRE", f"{B}cache:1:k", "60"), ("SETEX", f"{B}celery-task-meta-x", "60", "x"),
                    ("SISMEMBER", f"{B}celery-taskset-meta-x.d", "m"), ("ZCOUNT", f"{B}x", "-inf", "+inf"),
                    ("UNSUBSCRIBE", f"{B}app:x"),
                    ("SUBSCRIBE", f"{B}celery-task-meta-x"), ("SUBSCRIBE", f"{B}app:x"),
                    *[("EVALSHA", sha, "0") for sha in acl.role_scripts("results")]]:
        refused(b, *command)
    b.close()
