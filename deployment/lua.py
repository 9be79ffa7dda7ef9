"""The only Lua scripts a tenant may run: the ones the installed kombu sends, derived from its sources.

Tenants may not load scripts (SCRIPT LOAD would let them cache unbounded Lua outside maxmemory) and
may EVALSHA only these SHA1s (deployment/acl.py grants `+evalsha|<sha1>` for each). The sources are
read from the installed packages at render time, never copied here, so a kombu upgrade that changes
or adds a script changes the SHA1s and the ACL with it instead of silently breaking delivery:

- kombu.transport.redis: every module-level Lua source (today REFRESH_BINDING and SWEEP_BINDINGS,
  run for queues with x-expires such as Celery's pidbox and reply queues).
- redis.lock.Lock.LUA_RELEASE_SCRIPT: kombu's Mutex (the unacked-restore lock) is a redis-py Lock;
  it acquires with SET NX PX and releases with this script. Its extend/reacquire scripts are unused.

ops/secrets/acl.py's apply() writes each source to the instance's secrets/redis/scripts/ folder; the
Redis healthcheck loads them (SCRIPT LOAD, as the `health` user) after every start and is healthy
only once every SHA1 Redis returns matches.
"""
import hashlib

from .errors import DeploymentError

LOAD_FILE = "load.redis-cli"  # the SCRIPT LOAD commands, one per line, for the healthcheck's redis-cli
EXPECT_FILE = "load.expect"  # what redis-cli must print for them: each SHA1, then PONG


def sha1(source: str) -> str:
    """As redis-py computes it (Script: sha1 of the utf-8 bytes) and Redis does for SCRIPT LOAD."""
    return hashlib.sha1(source.encode()).hexdigest()


KOMBU_SCRIPTS = 2  # REFRESH_BINDING and SWEEP_BINDINGS in kombu 5.7
PRINTABLE = range(0x20, 0x7F)  # bytes redis-cli's quoting keeps as they are (but `"` and `\`)


def kombu_scripts() -> dict[str, str]:
    """sha1 -> Lua source of every script the installed kombu can EVALSHA, in a stable order."""
    import redis.lock
    from kombu.transport import redis as transport

    sources = [value for _, value in sorted(vars(transport).items())
               if isinstance(value, str) and "redis.call(" in value]
    if len(sources) < KOMBU_SCRIPTS:
        raise DeploymentError(f"found {len(sources)} Lua scripts in kombu.transport.redis, expected at least "
                              f"{KOMBU_SCRIPTS}: "
                              "kombu moved its scripts; update deployment/lua.py to where they are now")
    sources.append(redis.lock.Lock.LUA_RELEASE_SCRIPT)
    return {sha1(s): s for s in sources}


def cli_quote(source: str) -> str:
    """One double-quoted argument in redis-cli's own syntax (sdssplitargs): exact bytes, one line."""
    out = []
    for byte in source.encode():
        ch = chr(byte)
        out.append(ch if byte in PRINTABLE and ch not in '"\\' else f"\\x{byte:02x}")
    return '"' + "".join(out) + '"'


def load_commands(scripts: dict[str, str]) -> str:
    """The healthcheck's redis-cli input: SCRIPT LOAD each script, then PING."""
    return "".join(f"SCRIPT LOAD {cli_quote(s)}\n" for s in scripts.values()) + "PING\n"


def load_expectation(scripts: dict[str, str]) -> str:
    return "".join(f"{sha}\n" for sha in scripts) + "PONG\n"


CELERY_CHORD_SCRIPTS = 3  # CHORD_PART_RETURN_LUA, CHORD_CLEANUP_LUA, CHORD_CLAIM_EXTEND_LUA in Celery 5.7


def celery_chord_scripts() -> dict[str, str]:
    """sha1 -> Lua source of Celery's Redis result backend scripts (chord bookkeeping), read from the installed Celery.

    Fixed scripts over their KEYS (no loop beyond four keys), run with the tenant's rights; the `results` role may
    EVALSHA them (deployment/acl.py). Loaded with kombu's by the server's healthcheck (loaded_scripts), or every chord
    fails with NOPERM on redis-py's SCRIPT LOAD fallback."""
    from celery.backends import redis as backend

    sources = [value for name, value in sorted(vars(backend).items())
               if name.isupper() and isinstance(value, str) and "redis.call(" in value]
    if not sources and not hasattr(backend, "CHORD_PART_RETURN_LUA"):
        return {}  # Celery before 5.7 books chords with a MULTI pipeline instead (its commands are in the role)
    if len(sources) < CELERY_CHORD_SCRIPTS:
        raise DeploymentError(f"found {len(sources)} Lua scripts in celery.backends.redis, expected at least "
                              f"{CELERY_CHORD_SCRIPTS}: Celery moved its chord scripts; update deployment/lua.py "
                              "celery_chord_scripts to where they are now")
    return {sha1(s): s for s in sources}


def loaded_scripts() -> dict[str, str]:
    """Every script the server's healthcheck SCRIPT LOADs: kombu's (the broker) and Celery's (the results role).

    Loading is server-wide and harmless; running one needs the `+evalsha|<sha1>` of a role the tenant declared."""
    return {**kombu_scripts(), **celery_chord_scripts()}
