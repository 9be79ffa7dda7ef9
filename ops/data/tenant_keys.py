"""One tenant's Redis keys moved by DUMP and RESTORE: out of the live server, out of a backup's RDB, back in.

Every key of tenant t starts with naming.key_prefix(t) (kombu's global_keyprefix, the ACL's key pattern). They are
found with SCAN MATCH (never KEYS), read with DUMP and PEXPIRETIME (the absolute expiry, so a key keeps the moment it
expires, not a TTL counted again from the restore), written with RESTORE ... REPLACE ABSTTL, deleted with UNLINK. Only
the tenant's own keys are touched: no CLIENT PAUSE, no FLUSH, no restart, nothing server-wide, so the other tenants go
on serving (a RESTORE of a big key costs the server what writing it did; UNLINK frees memory on a background thread).

A whole backup's RDB is read by a throwaway server of the instance's server image (scratch()): no network at all
(`--network none`, `--port 0`), the backup mounted read-only, reached by ops over a Unix socket in a private host
folder. It runs as root without capabilities, as the backup checkers do (backups are root's, 0600). Its container is
named and labelled like a volume job, so `recover` removes one a killed run left.
"""
import contextlib
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import redis
from ops.config.paths import COMPOSE_PROJECT, INSTANCE
from ops.core.errors import OpsError
from ops.core.run import probe
from ops.data import backup_format as fmt
from ops.data.journal import fault_point
from ops.deploy import containers

BATCH = 1000  # keys per SCAN page and per pipeline: few round trips, no long command on the live server
# In the throwaway server only: one pass over its keyspace counting, per prefix (ARGV), keys, keys with a TTL and
# the memory they take (MEMORY USAGE: what they will take in the live server).
COUNT_LUA = """
local keys, expires, bytes = {}, {}, {}
for i = 1, #ARGV do keys[i] = 0; expires[i] = 0; bytes[i] = 0 end
local cursor = "0"
repeat
  local page = redis.call("SCAN", cursor, "COUNT", 1000)
  cursor = page[1]
  for _, k in ipairs(page[2]) do
    for i, p in ipairs(ARGV) do
      if string.sub(k, 1, #p) == p then
        keys[i] = keys[i] + 1
        if redis.call("PTTL", k) >= 0 then expires[i] = expires[i] + 1 end
        bytes[i] = bytes[i] + (redis.call("MEMORY", "USAGE", k) or 0)
        break
      end
    end
  end
until cursor == "0"
local out = {}
for i = 1, #ARGV do out[3 * i - 2] = keys[i]; out[3 * i - 1] = expires[i]; out[3 * i] = bytes[i] end
return out
"""


def pattern(prefix: str) -> str:
    """The SCAN MATCH pattern of every key under prefix (its glob characters escaped)."""
    for c in "\\*?[":
        prefix = prefix.replace(c, "\\" + c)
    return prefix + "*"


def records(client: redis.Redis, prefix: str):
    """(key, absolute expiry ms or -1, DUMP payload) of every key under prefix, a page at a time.

    A key deleted between its SCAN page and its DUMP is skipped (DUMP answers nil): it is gone."""
    cursor = 0
    while True:
        cursor, page = client.scan(cursor=cursor, match=pattern(prefix), count=BATCH)
        if page:
            pipe = client.pipeline(transaction=False)
            for key in page:
                pipe.dump(key)
                pipe.execute_command("PEXPIRETIME", key)
            replies = pipe.execute()
            for key, payload, expiry in zip(page, replies[::2], replies[1::2], strict=True):
                if payload is not None and expiry != -2:  # noqa: PLR2004 - PEXPIRETIME's "no such key"
                    yield key, int(expiry), payload
        if cursor == 0:
            return


def count(client: redis.Redis, prefix: str) -> int:
    """How many keys the live server holds under prefix (SCAN MATCH, never KEYS)."""
    return sum(1 for _ in client.scan_iter(match=pattern(prefix), count=BATCH))


def restore_records(client: redis.Redis, source, log=print, what: str = "keys") -> dict:
    """RESTORE ... REPLACE ABSTTL every record of source into client, BATCH at a time; returns its counts.

    A key whose expiry passed since it was saved is not created (RESTORE with a past ABSTTL): it would have expired
    by now. The fault point `restoring-keys` is after the first batch: a run killed there left a half-restored
    prefix, which recover repeats from the start (every step replaces, so a repeat is safe)."""
    done = {"keys": 0, "expires": 0, "bytes": 0}
    pipe = client.pipeline(transaction=False)
    pending, t0, batches = 0, time.monotonic(), 0
    for key, expiry, payload in source:
        pipe.execute_command("RESTORE", key, max(expiry, 0), payload, "REPLACE", *(["ABSTTL"] if expiry >= 0 else []))
        done["keys"] += 1
        done["expires"] += expiry >= 0
        done["bytes"] += len(key) + len(payload)
        pending += 1
        if pending >= BATCH:
            pipe.execute()
            pending, batches = 0, batches + 1
            if batches == 1:
                fault_point("restoring-keys")
            if batches % 50 == 0:
                log(f"{done['keys']} {what} restored ({time.monotonic() - t0:.1f}s)")
    if pending:
        pipe.execute()
        if batches == 0:
            fault_point("restoring-keys")
    return done


# ---- a throwaway server on a backup's RDB ---------------------------------------------------------------------
def scratch_argv(job: str, redis_dir: Path, sock_dir: Path) -> list[str]:
    """The `docker run` of the throwaway server: no network, no port, read-only root and backup, no capabilities."""
    return ["docker", "run", "--detach", "--name", job, "--label", f"{containers.JOB_OWNER_LABEL}={os.getpid()}",
            "--label", f"{containers.JOB_INSTANCE_LABEL}={INSTANCE.name}", "--pull", "never", "--network", "none",
            "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges:true", "--user", "0:0",
            "--tmpfs", "/data:rw,size=1024k,mode=0700", "-v", f"{redis_dir.resolve()}:/backup:ro",
            "-v", f"{sock_dir}:/sock", "--entrypoint", "valkey-server", fmt.server_image(),
            "--port", "0", "--unixsocket", "/sock/valkey.sock", "--unixsocketperm", "700", "--dir", "/backup",
            "--dbfilename", fmt.RDB_NAME, "--appendonly", "no", "--save", "", "--protected-mode", "no"]


@contextlib.contextmanager
def scratch(redis_dir: Path, subject: str, timeout: float = 600):
    """A client of a throwaway server that loaded redis_dir/dump.rdb (see the module docstring); removed after."""
    job = f"{COMPOSE_PROJECT}-job-{uuid.uuid4().hex[:8]}"
    sock_dir = Path(tempfile.mkdtemp(prefix="tenantstack-scratch-"))
    os.chmod(sock_dir, 0o700)
    try:
        started = probe(scratch_argv(job, redis_dir, sock_dir), what=f"a throwaway server for {subject}")
        if started.returncode != 0:
            said = (started.stderr.strip().splitlines() or ["no output"])[-1]
            raise OpsError(f"cannot read {subject}: the throwaway server of {fmt.server_image()} did not start "
                           f"({said[:200]}): build the image with `./invoke build`")
        client = redis.Redis(unix_socket_path=str(sock_dir / "valkey.sock"), socket_timeout=600)
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.ping()
                break
            except (redis.ConnectionError, redis.BusyLoadingError, FileNotFoundError) as exc:
                if time.monotonic() > deadline or probe(["docker", "inspect", "--format", "{{.State.Running}}",
                                                         job]).stdout.strip() != "true":
                    logs = probe(["docker", "logs", "--tail", "3", job])
                    said = " ".join((logs.stdout + logs.stderr).split())[-200:] or str(exc)
                    raise OpsError(f"cannot read {subject}: its RDB did not load in a throwaway server ({said})") \
                        from None
                time.sleep(0.1)
        yield client
    finally:
        probe(["docker", "rm", "-f", "-v", job])
        shutil.rmtree(sock_dir, ignore_errors=True)


def counts_by_prefix(client: redis.Redis, names: list[str], prefix_of) -> dict:
    """tenant -> {"keys", "expires", "bytes"} in a throwaway server (one Lua pass there: never on the live server)."""
    if not names:
        return {}
    flat = client.eval(COUNT_LUA, 0, *[prefix_of(n) for n in names])
    return {n: {"keys": int(flat[3 * i]), "expires": int(flat[3 * i + 1]), "bytes": int(flat[3 * i + 2])}
            for i, n in enumerate(names)}
