"""The one renderer of Redis' access rules: every ACL user's rule and the auth file Redis includes.

Nothing else builds an ACL rule. ops/secrets/acl.py's `apply()` is the one writer: it puts these rules
wherever they must be (the auth file read at every Redis start, and the live Redis), so two writers
can never undo each other. Each rule starts with `reset`, so a rule is always the whole truth.
"""
import hashlib
import hmac
from collections.abc import Mapping

from . import envs, lua, naming

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
# SUBSCRIBE (kombu only PSUBSCRIBEs), EVAL/EVAL_RO/EVALSHA_RO/FCALL/FUNCTION/SCRIPT other than EXISTS.
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
# Each tenant's metrics exporter (app/jobs/metrics.py): read-only on exactly the tenant's queue and unacked
# hash (%R~: read-only key permission, Redis 7.0), and PSUBSCRIBE on exactly its workers' event pattern.
# redis-py sends AUTH, CLIENT SETNAME and CLIENT SETINFO on connect, PING as the pub/sub health check,
# PUNSUBSCRIBE on close.
METRICS_COMMANDS = ("-@all +auth +client|setname +client|setinfo +ping +llen +lindex +hlen +psubscribe "
                    "+punsubscribe")
# Commands renamed to generated names kept in envs/redis.env (ACL rules still use the original names),
# and commands disabled outright.
RENAMED = {"CONFIG": "REDIS_CONFIG_COMMAND", "KEYS": "REDIS_KEYS_COMMAND", "SHUTDOWN": "REDIS_SHUTDOWN_COMMAND"}
DISABLED = ("FLUSHALL", "FLUSHDB", "DEBUG")


def tenant_rule(tenant: str, settings: Mapping[str, str], scripts=None) -> list[str]:
    """The whole rule of a tenant's user; `settings` is its env file (REDIS_PASSWORD, declarations)."""
    declared = {}
    for name in ("CELERY_BROADCAST_QUEUES", "CELERY_EVENT_ROUTING_KEYS"):
        declared[name], problem = envs.items(envs.TENANT[name], settings.get(name, ""))
        if problem:  # the env file's validation refuses it first; never render a rule from a bad item
            raise ValueError(f"tenant {tenant}: {problem}: {envs.TENANT[name].fix}")
    patterns = naming.acl_channel_patterns(tenant, broadcast_queues=declared["CELERY_BROADCAST_QUEUES"],
                                           event_routing_keys=declared["CELERY_EVENT_ROUTING_KEYS"])
    # `+evalsha|<sha1>` is Redis 7.0's first-argument rule: deprecated since 7.0 (it may go in a later
    # major version) but supported and the only way to allow some scripts and not others. Only kombu's
    # scripts (deployment/lua.py), so no tenant can run a loop or reach Lua's unbounded memory.
    evalsha = [f"+evalsha|{sha}" for sha in (lua.kombu_scripts() if scripts is None else scripts)]
    return ["reset", "on", f">{settings['REDIS_PASSWORD']}", f"~{naming.key_prefix(tenant)}*", "resetchannels",
            *[f"&{p}" for p in patterns], "-@all", *[f"+{c}" for c in TENANT_COMMANDS.split()], *evalsha]


def monitoring_password(redis_env: Mapping[str, str], user: str) -> str:
    """A monitoring user's password: HMAC-SHA256 of its name under REDIS_MONITORING_SECRET (envs/redis.env).

    Derived, so adding a tenant needs no new secret; rotating the one secret (`init --rotate`) rotates all."""
    key = redis_env["REDIS_MONITORING_SECRET"].encode()
    return hmac.new(key, user.encode(), hashlib.sha256).hexdigest()


def metrics_rule(tenant: str, redis_env: Mapping[str, str]) -> list[str]:
    """The whole rule of a tenant's metrics user: reads two keys, listens to its workers' events, nothing else."""
    user = naming.metrics_user(tenant)
    return ["reset", "on", f">{monitoring_password(redis_env, user)}",
            f"%R~{naming.queue_key(tenant)}", f"%R~{naming.unacked_key(tenant)}",
            "resetchannels", f"&{naming.worker_events_pattern(tenant)}", *METRICS_COMMANDS.split()]


def rules(redis_env: dict[str, str], tenant_settings: dict[str, Mapping[str, str]]) -> dict[str, list[str]]:
    """user -> its whole rule, as ACL SETUSER and the auth file's `user` line both take it.

    tenant_settings: tenant -> its env file's values (at least REDIS_PASSWORD)."""
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
        out[naming.redis_user(tenant)] = tenant_rule(tenant, settings, scripts)
        out[naming.metrics_user(tenant)] = metrics_rule(tenant, redis_env)
    return out


def maxmemory_mb(redis_env: dict[str, str]) -> int:
    """The memory budget; an env file from before the setting existed gets the table's default."""
    row = envs.REDIS["REDIS_MAXMEMORY_MB"]
    value, problem = envs.integer(row, redis_env.get(row.name) or row.default)
    if problem:
        raise ValueError(f"{problem}: {row.fix}")
    return value


def auth_conf(redis_env: dict[str, str], tenant_settings: dict[str, Mapping[str, str]]) -> str:
    lines = ["# GENERATED by ./invoke from envs/*.env (deployment/acl.py): do not edit, it is rewritten on every run.",
             f"requirepass {redis_env['REDIS_PASSWORD']}",
             # From REDIS_MAXMEMORY_MB (envs/redis.env); redis.conf includes this file last, so it wins.
             f"maxmemory {maxmemory_mb(redis_env)}mb"]
    lines += [f"user {user} {' '.join(rule)}" for user, rule in rules(redis_env, tenant_settings).items()]
    lines += [f"rename-command {cmd} {redis_env[key]}" for cmd, key in RENAMED.items()]
    lines += [f'rename-command {cmd} ""' for cmd in DISABLED]
    return "\n".join(lines) + "\n"


def parse_users(text: str) -> dict[str, list[str]]:
    """The `user` lines of an auth file as rendered above: user -> rule."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if parts[:1] == ["user"] and len(parts) > 1:
            out[parts[1]] = parts[2:]
    return out
