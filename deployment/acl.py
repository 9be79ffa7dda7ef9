"""The one renderer of Redis' access rules: every ACL user's rule and the auth file Redis includes.

Nothing else builds an ACL rule. ops/secrets/acl.py's `apply()` is the one writer: it puts these rules
wherever they must be (the auth file read at every Redis start, and the live Redis), so two writers
can never undo each other. Each rule starts with `reset`, so a rule is always the whole truth.
"""
import hashlib
import hmac
from collections.abc import Mapping

from . import envs, lua, naming
from . import tenant as tenant_model

# Tenant users get exactly the commands their Celery stack sends, and no category at all: a category
# (+@connection, +@read, ...) silently grants whatever Redis files under it, e.g. CLIENT TRACKING, whose
# BCAST PREFIX Redis 7.0 never checks against the ACL (another tenant's key names as invalidations).
# Derived by recording: tests/support/command_recorder.py ran an operator MONITOR (plus CLIENT LIST to
# tell users apart) on the fast test server while tests/app/ ran (worker, beat, gunicorn web,
# inspect/control CLI and API, tenant isolation), kombu 5.7.0, Celery 5.7.0, redis-py 8.1.0, Django 5.2.
# Observed for tenant users:
#   brpop client|setname del evalsha exec hdel hello hget hset llen lpush multi ping psubscribe publish
#   punsubscribe rpop sadd script|exists script|load set smembers srem watch zadd zrange zrem
#   and inside kombu's Lua: del get sadd time zadd zrangebyscore
# Added by reading kombu/transport/redis.py and redis-py, on paths the tests did not reach: rpush
# (restore at the tail), exists (queue_declare passive), pexpire (queues with x-expires), unwatch and
# discard (redis-py ends an aborted WATCH/MULTI with them), zrem/exists inside SWEEP_BINDINGS, auth
# (redis-py re-authenticates with AUTH). Dropped from what was seen: script|load (kombu only falls back
# to it when a script is missing; the healthcheck preloads them, and a tenant loading scripts would
# cache unbounded Lua outside maxmemory) and the test's own arbitrary scripts.
# CLIENT SETINFO: redis-py sends `CLIENT SETINFO LIB-NAME`/`LIB-VER` on every new connection and ignores a
# refusal; Redis 7.0 did not know the command, Valkey 8.1 does, and a refusal there is an ACL LOG entry on
# every connect. It only labels the caller's own connection, so every user redis-py connects as has it.
# Never granted, though some are "connection" commands: CLIENT TRACKING/KILL/PAUSE/NO-EVICT/LIST/INFO,
# SELECT (and `databases 1` in redis.conf), SCAN/KEYS/RANDOMKEY/DBSIZE, PUBSUB, OBJECT, MEMORY,
# SUBSCRIBE (kombu only PSUBSCRIBEs; a declared role gets it on its own channels only: ROLE_SUBSCRIBE),
# EVAL/EVAL_RO/EVALSHA_RO/FCALL/FUNCTION/SCRIPT other than EXISTS.
# RESET and QUIT cannot be denied: Redis 7.0 runs no-auth commands before any ACL check (RESET leaves
# the connection with at most the user's rights; tests/app/test_hostile_tenant.py).
TENANT_COMMANDS = (
    "hello auth ping client|setname client|setinfo "         # connect: RESP3 HELLO, AUTH, client_name, lib
    "lpush rpush rpop brpop llen del exists pexpire "        # queues (kombu's virtual transport)
    "sadd srem smembers "                                    # _kombu.binding.* tables
    "zadd zrem zrange zrangebyscore hset hget hdel set "     # unacked index/hash, Mutex (SET NX PX)
    "watch unwatch multi exec discard "                      # restore_by_tag's transaction, pipelines
    "publish psubscribe punsubscribe "                       # fanout: pidbox, events, Broadcast()
    "script|exists get time")                                # redis-py pipelines; inside kombu's scripts

# ---- the Redis roles a tenant declares beyond the broker (REDIS_ROLES; app/tenantstack/roles.py configures the
# clients) --------------------------------------------------------------------------------------------------------
# Each role's exact commands, recorded like TENANT_COMMANDS from the very clients tenantstack/roles.py configures:
# Valkey 8.1 (the server image), Django 5.2.19, Celery 5.7.0, kombu 5.7.0, redis-py 8.1.0. Each role's client ran as
# its own user allowed every command on the tenant's keys and channels only (~<prefix>* &<prefix>*), under an operator
# MONITOR (tests/support/command_recorder.py's, except that a connection's user was the last one CLIENT LIST showed
# for it: a new connection is `default` until its HELLO AUTH); ACL LOG stayed empty (no key or channel outside the
# prefix). tests/app/test_redis_roles.py runs the same clients against exactly these rules, under the suite's check
# that ACL LOG stays empty. A role lists everything its client sends, connect commands too, so each set stands alone
# when roles move between users (issue 22).
# Never granted to any role: EVAL/EVAL_RO/FCALL/FUNCTION/SCRIPT LOAD, SCAN/KEYS (enumeration), FLUSHDB/FLUSHALL
# (disabled in redis.conf anyway), PSUBSCRIBE beyond the broker's literal patterns, PERSIST (a key without expiry).
# Hence django-redis (EVAL for incr, SCAN for delete_pattern, KEYS, FLUSHDB for clear) and channels_redis (EVAL of its
# own Lua, KEYS inside it) are not supported: tenantstack/roles.py says what to use instead.
#
# cache: Django's django.core.cache.backends.redis.RedisCache as tenantstack.roles.TenantRedisCache, and sessions
#   through it (django.contrib.sessions.backends.cache). Recorded: get, get_many, set, add (also with timeout 0),
#   set_many, delete, delete_many, incr, decr, touch, has_key, get_or_set, incr_version/decr_version, a missing key's
#   incr; sessions save, load, exists, cycle_key, set_expiry, flush; a connection reused after the health-check
#   interval. Seen: hello client|setinfo client|setname get set del exists expire incrby mget mset multi exec ping.
#   Added by reading Django's RedisCacheClient and redis-py: auth (re-authentication), discard (set_many's MULTI
#   aborted). Not granted: persist (touch(timeout=None); TenantRedisCache refuses None timeouts before sending) and
#   flushdb (clear(); TenantRedisCache refuses it: it would empty every tenant's keys).
# results: Celery's Redis result backend (rediss://, result_backend_transport_options global_keyprefix). Recorded with
#   a real prefork worker: AsyncResult.get() (over pub/sub), ready/state/successful, a failure, forget, a group's
#   get, GroupResult save/restore/join/join_native/forget/delete, chords (plain, with a failing header task, with a
#   group in the header, with Task.add_to_chord and update_state in the header), a connection reused after the
#   health-check interval. Seen: hello client|setinfo client|setname ping get mget set setex del publish multi exec
#   zrange incrby evalsha subscribe unsubscribe, and inside Celery's chord scripts (which run with the caller's
#   rights) get set del expire sadd sismember zadd zcount. Added by reading celery/backends/redis.py and redis-py:
#   exists (CHORD_CLAIM_EXTEND_LUA's reacquire path), auth, discard. Not granted: rpush/llen of the unordered chord
#   path (result_chord_ordered is read from result_backend_transport_options, which the deployment owns) and
#   script|load (redis-py falls back to it for a missing script: the scripts are preloaded, see role_scripts).
#   Celery 5.6 (the tested range's lower bound) has no chord scripts: it books a chord with a MULTI pipeline of zadd,
#   zcount, get, expire, then zrange and del (read from its celery/backends/redis.py), all in this set.
#   SUBSCRIBE only on <prefix>celery-task-meta-* (ROLE_SUBSCRIBE): the backend subscribes to a task's key as its
#   channel when the caller waits for it; results are PUBLISHed on the same names (and a saved group on
#   <prefix>celery-taskset-meta-*), within the broker's &<prefix>*.
# pubsub: the application's PUBLISH/SUBSCRIBE on <prefix>app:<name> with tenantstack.roles.pubsub_client: subscribe,
#   publish, get_message, the health-check PING while subscribed, unsubscribe, close. Seen: hello client|setinfo
#   client|setname ping publish subscribe unsubscribe. Added by reading redis-py: auth. SUBSCRIBE only on
#   <prefix>app:* (ROLE_SUBSCRIBE); PSUBSCRIBE is not granted for it.
ROLE_COMMANDS = {
    "cache": ("hello auth ping client|setname client|setinfo "
              "get set del exists expire incrby mget mset multi exec discard"),
    "results": ("hello auth ping client|setname client|setinfo "
                "get mget set setex del exists expire incrby publish multi exec discard unsubscribe zrange "
                "sadd sismember zadd zcount"),  # the last line and get/set/del/exists/expire: inside the chord scripts
    "pubsub": "hello auth ping client|setname client|setinfo publish unsubscribe",
}
# SUBSCRIBE per role, confined to the channels of this pattern (deployment/naming.py: each starts with the tenant's
# prefix, which holds no glob character, so none reaches another tenant's channels). Every tenant's root rule has
# &<prefix>* for PUBLISH (kombu's fanout, and every role's PUBLISH), and Redis allows SUBSCRIBE to any channel an &
# pattern matches: +subscribe in the root rule would let a tenant listen on every channel of its own (pidbox, events).
# So SUBSCRIBE is granted only in an ACL selector (Redis 7.0) of its own per role, `(+subscribe &<pattern>)`: a command
# is allowed when the root rule or one selector allows it whole (command, keys and channels), so SUBSCRIBE reaches
# exactly these channels.
ROLE_SUBSCRIBE = {"results": naming.result_channel_pattern, "pubsub": naming.app_channel_pattern}


HEALTH_USER = "health"
# The healthcheck also loads kombu's scripts after every start (redis/healthcheck.sh): script|load only.
HEALTH_COMMANDS = "-@all +ping +auth +hello +script|load"
COMMANDER_USER = "commander"
# redis-commander: read-only, may list keys with SCAN (KEYS is renamed) and see INFO. Checked on Valkey 8.1 with
# redis-commander 0.9.0 / ioredis 5.6.0 (tools/redis-commander/package-lock.json): its connection, server info, key
# tree, each key type's view and export leave ACL LOG empty. ioredis 5.6 sends no CLIENT SETINFO, so unlike
# redis-py's users this one needs no client|setinfo.
COMMANDER_COMMANDS = ("-@all +@read -@dangerous +info +scan +ping +hello +auth +select +client|setname "
                      "+command +module|list")
EXPORTER_USER = "exporter"
# redis_exporter 1.69 (Debian 13's prometheus-redis-exporter) against Valkey 8.1, as compose/monitoring.yaml runs
# it: recorded with ACL LOG against a user allowed nothing, one scrape at a time (ACL LOG RESET between them),
# granting what was refused, until the log stayed empty over two scrapes. Refused in turn: CLIENT SETNAME, INFO
# (INFO ALL; 1.69 retries a refused INFO ALL as a bare INFO); then SLOWLOG LEN, SLOWLOG GET, LATENCY LATEST and
# LATENCY HISTOGRAM (new since 1.45: per-command latency histograms, no key names). AUTH is sent first on every
# connection; Valkey runs it before any ACL check, so ACL LOG never shows it: an operator MONITOR did (AUTH, CLIENT
# SETNAME, INFO ALL; it leaves out admin commands such as SLOWLOG and LATENCY). No PING (--ping-on-connect is off),
# no CLIENT SETINFO (redigo does not send it). CONFIG GET is not granted: the exporter runs with --config-command=-
# (it skips CONFIG and reads maxmemory from INFO memory, which Valkey reports like Redis). No key, no channel, no
# Lua, no SELECT: --check-keys / key groups / streams are not enabled. SLOWLOG GET shows the first arguments of slow
# commands (any tenant's key names): an operator-only view, as is this user.
EXPORTER_COMMANDS = ("-@all +auth +client|setname +info +slowlog|len +slowlog|get +latency|latest "
                     "+latency|histogram")
# Each tenant's metrics exporter (app/tenantstack/metrics.py): read-only on exactly each declared queue and the
# unacked hash (%R~: read-only key permission, Redis 7.0), and PSUBSCRIBE on exactly its workers' event pattern.
# redis-py sends AUTH, CLIENT SETNAME and CLIENT SETINFO on connect, PING as the pub/sub health check,
# PUNSUBSCRIBE on close.
METRICS_COMMANDS = ("-@all +auth +client|setname +client|setinfo +ping +llen +lindex +hlen +psubscribe "
                    "+punsubscribe")
# Commands renamed to generated names kept in envs/redis.env (ACL rules still use the original names),
# and commands disabled outright.
RENAMED = {"CONFIG": "REDIS_CONFIG_COMMAND", "KEYS": "REDIS_KEYS_COMMAND", "SHUTDOWN": "REDIS_SHUTDOWN_COMMAND"}
DISABLED = ("FLUSHALL", "FLUSHDB", "DEBUG")


def role_scripts(role: str) -> dict[str, str]:
    """sha1 -> Lua source of the scripts a role's client EVALSHAs: Celery's chord scripts for results (lua.py).

    Like kombu's, tenants may EVALSHA them but never load them: the healthcheck loads every one after each start."""
    return lua.celery_chord_scripts() if role == "results" else {}


def tenant_spec(tenant: str, settings: Mapping[str, str]) -> tenant_model.Spec:
    """The tenant's declarations (deployment/tenant.py): its roles shape its rule. The env file's validation refuses
    a bad one first; never render a rule from it."""
    return tenant_model.spec(tenant, dict(settings))


def tenant_users(spec: tenant_model.Spec) -> dict[str, tuple[str, ...]]:
    """Each Redis user of the tenant -> the roles it gets.

    Today one user, tenant-<t>, serves web, worker and beat with every declared role. Issue 22 splits it into a
    producer user (web, beat) and a worker user: two rows here, each with the roles its processes use (e.g. the
    producer without the worker's chord scripts), and each rule is rendered from its row alone."""
    return {naming.redis_user(spec.tenant): spec.roles}


def role_grants(role: str, tenant: str, kombu_scripts: Mapping[str, str]) -> tuple[list[str], list[str], list[str]]:
    """(commands, EVALSHA sha1s, selectors) one role adds to a user's rule."""
    if role == "broker":
        return TENANT_COMMANDS.split(), list(kombu_scripts), []
    subscribe = ROLE_SUBSCRIBE.get(role)
    selectors = [f"(+subscribe &{subscribe(tenant)})"] if subscribe else []
    return ROLE_COMMANDS[role].split(), list(role_scripts(role)), selectors


def password_hash(password: str) -> str:
    """The SHA-256 hex digest Redis keeps of a password (ACL GETUSER's `passwords`): `#<it>` in a rule accepts the
    password without naming it, so a rotation keeps the previous one valid without storing it in clear."""
    return hashlib.sha256(password.encode()).hexdigest()


def user_rule(tenant: str, password: str, roles, channel_patterns, kombu_scripts: Mapping[str, str],
              previous=()) -> list[str]:
    """The whole rule of one tenant user with `roles`: the tenant's keys, its channels, each role's grants once.

    `previous`: SHA-256 hex digests of passwords still accepted beside `password` (a rotation's roll,
    ops/data/rotate.py: processes that still hold the old one keep connecting until they are reloaded)."""
    commands, shas, selectors = {}, {}, {}
    for role in roles:
        role_commands, role_shas, role_selectors = role_grants(role, tenant, kombu_scripts)
        commands.update(dict.fromkeys(role_commands))
        shas.update(dict.fromkeys(role_shas))
        selectors.update(dict.fromkeys(role_selectors))
    # `+evalsha|<sha1>` is Redis 7.0's first-argument rule: deprecated since 7.0 (it may go in a later
    # major version) but supported and the only way to allow some scripts and not others. Only kombu's
    # scripts (deployment/lua.py) and a declared role's (role_scripts), so no tenant can run a loop or reach
    # Lua's unbounded memory.
    extra = [f"#{h}" for h in dict.fromkeys(previous) if h != password_hash(password)]
    return ["reset", "on", f">{password}", *extra, f"~{naming.key_prefix(tenant)}*", "resetchannels",
            *[f"&{p}" for p in channel_patterns], "-@all", *[f"+{c}" for c in commands],
            *[f"+evalsha|{sha}" for sha in shas], *selectors]


def tenant_rules(tenant: str, settings: Mapping[str, str], scripts=None,
                 previous: Mapping[str, tuple[str, ...]] | None = None) -> dict[str, list[str]]:
    """user -> whole rule, for each of the tenant's users (tenant_users); `settings` is its env file (REDIS_PASSWORD,
    declarations: pub/sub patterns, REDIS_ROLES); `scripts` kombu's (lua.kombu_scripts(), read once by rules());
    `previous`: user -> password digests still accepted during a rotation (user_rule)."""
    declared = {}
    for name in ("CELERY_BROADCAST_QUEUES", "CELERY_EVENT_ROUTING_KEYS"):
        declared[name], problem = envs.items(envs.TENANT[name], settings.get(name, ""))
        if problem:  # the env file's validation refuses it first; never render a rule from a bad item
            raise ValueError(f"tenant {tenant}: {problem}: {envs.TENANT[name].fix}")
    spec = tenant_spec(tenant, settings)
    # Every user's root channels: PUBLISH anywhere under the prefix (kombu's fanout, results, the app's channels)
    # and the exact patterns kombu PSUBSCRIBEs. SUBSCRIBE comes only with a role, in its selector (ROLE_SUBSCRIBE).
    patterns = naming.acl_channel_patterns(tenant, broadcast_queues=declared["CELERY_BROADCAST_QUEUES"],
                                           event_routing_keys=declared["CELERY_EVENT_ROUTING_KEYS"])
    kombu = lua.kombu_scripts() if scripts is None else scripts
    previous = previous or {}
    return {user: user_rule(tenant, settings["REDIS_PASSWORD"], roles, patterns, kombu, previous.get(user, ()))
            for user, roles in tenant_users(spec).items()}


def tenant_rule(tenant: str, settings: Mapping[str, str], scripts=None) -> list[str]:
    """The whole rule of the tenant's user tenant-<t>; `settings` is its env file (REDIS_PASSWORD, declarations)."""
    return tenant_rules(tenant, settings, scripts)[naming.redis_user(tenant)]


def monitoring_password(redis_env: Mapping[str, str], user: str) -> str:
    """A monitoring user's password: HMAC-SHA256 of its name under REDIS_MONITORING_SECRET (envs/redis.env).

    Derived, so adding a tenant needs no new secret; rotating the one secret (`init --rotate`) rotates all."""
    key = redis_env["REDIS_MONITORING_SECRET"].encode()
    return hmac.new(key, user.encode(), hashlib.sha256).hexdigest()


def metrics_rule(tenant: str, redis_env: Mapping[str, str], queues=()) -> list[str]:
    """The whole rule of a tenant's metrics user: reads each declared queue's list and the unacked hash, listens to
    its workers' events, nothing else. Queue names hold no glob character (deployment/envs.py CELERY_QUEUES)."""
    user = naming.metrics_user(tenant)
    keys = [naming.key_prefix(tenant) + q for q in (queues or (naming.queue_name(tenant),))]
    return ["reset", "on", f">{monitoring_password(redis_env, user)}",
            *[f"%R~{k}" for k in keys], f"%R~{naming.unacked_key(tenant)}",
            "resetchannels", f"&{naming.worker_events_pattern(tenant)}", *METRICS_COMMANDS.split()]


def rules(redis_env: dict[str, str], tenant_settings: dict[str, Mapping[str, str]],
          previous: Mapping[str, tuple[str, ...]] | None = None) -> dict[str, list[str]]:
    """user -> its whole rule, as ACL SETUSER and the auth file's `user` line both take it.

    tenant_settings: tenant -> its env file's values (at least REDIS_PASSWORD); previous: tenant user -> password
    digests accepted beside its password while a rotation rolls (user_rule)."""
    scripts = lua.kombu_scripts()
    out = {
        HEALTH_USER: ["reset", "on", f">{redis_env['REDIS_HEALTH_PASSWORD']}", "resetkeys", "resetchannels",
                      *HEALTH_COMMANDS.split()],
        COMMANDER_USER: ["reset", "on", f">{redis_env['REDIS_COMMANDER_PASSWORD']}", "~*", "resetchannels",
                         *COMMANDER_COMMANDS.split()],
        EXPORTER_USER: ["reset", "on", f">{monitoring_password(redis_env, EXPORTER_USER)}", "resetkeys",
                        "resetchannels", *EXPORTER_COMMANDS.split()],
    }
    for tenant, settings in sorted(tenant_settings.items()):
        out.update(tenant_rules(tenant, settings, scripts, previous))
        out[naming.metrics_user(tenant)] = metrics_rule(tenant, redis_env, tenant_spec(tenant, settings).queues)
    return out


def maxmemory_mb(redis_env: dict[str, str]) -> int:
    """The memory budget; an env file from before the setting existed gets the table's default."""
    row = envs.REDIS["REDIS_MAXMEMORY_MB"]
    value, problem = envs.integer(row, redis_env.get(row.name) or row.default)
    if problem:
        raise ValueError(f"{problem}: {row.fix}")
    return value


def auth_conf(redis_env: dict[str, str], tenant_settings: dict[str, Mapping[str, str]],
              previous: Mapping[str, tuple[str, ...]] | None = None) -> str:
    lines = ["# GENERATED by ./invoke from envs/*.env (deployment/acl.py): do not edit, it is rewritten on every run.",
             f"requirepass {redis_env['REDIS_PASSWORD']}",
             # From REDIS_MAXMEMORY_MB (envs/redis.env); redis.conf includes this file last, so it wins.
             f"maxmemory {maxmemory_mb(redis_env)}mb"]
    lines += [f"user {user} {' '.join(rule)}" for user, rule in rules(redis_env, tenant_settings, previous).items()]
    lines += [f"rename-command {cmd} {redis_env[key]}" for cmd, key in RENAMED.items()]
    lines += [f'rename-command {cmd} ""' for cmd in DISABLED]
    return "\n".join(lines) + "\n"


def parse_users(text: str) -> dict[str, list[str]]:
    """The `user` lines of an auth file as rendered above: user -> rule (a selector `(...)` is one item again)."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if parts[:1] == ["user"] and len(parts) > 1:
            rule: list[str] = []
            for part in parts[2:]:
                if rule and rule[-1].startswith("(") and not rule[-1].endswith(")"):
                    rule[-1] += f" {part}"
                else:
                    rule.append(part)
            out[parts[1]] = rule
    return out
