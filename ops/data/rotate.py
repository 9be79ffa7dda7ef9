"""`./invoke rotate --tenant b`: one tenant's Redis password, Django secret key and database password renewed while
it serves, with no failed request; its processes pick the new secrets up in place (no container is recreated).

The order is what keeps every request working, and the journal (kind `rotate`, ops/data/journal.py) records each
step before it is made:
  1. the new values go into the tenant's env file (ops/secrets/rotate.py; the one source of truth), after the
     journal recorded the SHA-256 digests of the old and the new Redis password (never a password)
  2. the ACL accepts both passwords of every Redis user of the tenant (`>new #<old digest>`, through the one writer:
     auth file and the live server), so processes still holding the old one keep connecting
  3. the secret files are rewritten (partial -> rename) in the folder the containers mount (a directory mount: a
     replaced file is seen), and a new client certificate is issued
  4. workers and beat stop warm (`docker stop`: SIGTERM lets running tasks finish; queued ones wait in Redis); then
     a PostgreSQL tenant's role gets its new verifier (one password per role: open connections stay, new ones need
     the new password), so no task opens a connection with the old one
  5. the web's gunicorn rolls its workers (containers.graceful_reload: same listening socket, each new worker reads
     the new files and has loaded the application before an old one is retired gracefully); workers and beat
     start again in the same containers; all healthy
  6. the old password leaves the ACL (live and in the auth file), connections that were open before the rotation
     began are closed (they may be whoever holds the leaked password), and ACL GETUSER must show only the new
     password's digest
Killed anywhere after 1, `./invoke recover` finishes it from 2 (every step may be repeated): the new secrets are
already on disk, so finishing is the safe direction. Killed before 1 completed, nothing changed.
"""
import time

import redis
from deployment import naming
from deployment import postgres as pg_model
from ops.config import tenants
from ops.core.errors import OpsError
from ops.data import journal as jn
from ops.deploy import containers, health, postgres_admin, redis_admin
from ops.secrets import acl as acl_writer
from ops.secrets import rotate as secrets
from ops.secrets import tenant_files

KIND = "rotate"


def _services(name: str) -> tuple[str, list[str]]:
    """(web, [each worker pool, beat]) of the tenant."""
    spec = tenants.declared(name).spec
    return naming.service_name(name, "web"), [*(p.service(name) for p in spec.pools), naming.service_name(name, "beat")]


def _operator():
    """The operator's client, or None when Redis is not running (its auth file is what it reads at start)."""
    client = redis_admin.operator(timeout=10)
    try:
        client.ping()
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return None
    return client


def _connections(client, users) -> list[int]:
    """Ids of the open connections authenticated as one of `users`."""
    return [int(c["id"]) for c in client.client_list() if c.get("user") in users] if client else []


def rotate(name: str, timeout: float = 300, log=print) -> list[str]:
    """Rotate tenant `name`'s secrets (see the module docstring); returns the summary lines."""
    if name not in tenants.known_names():
        known = ", ".join(tenants.known_names()) or "none"
        raise OpsError(f"unknown tenant {name!r} (tenants: {known}): nothing was changed")
    tenants.load(name)  # its env file validates, or one line says what is wrong
    started = time.monotonic()
    with jn.operation(KIND) as journal:
        old = secrets.current(name)
        new = secrets.renewed(old)
        previous = secrets.redis_digests(name, old)
        client = _operator()
        entry = journal.record(KIND, tenant=name, step="writing the env file", previous=previous,
                               new=secrets.redis_digests(name, new),
                               connections=_connections(client, set(previous)))
        jn.fault_point("rotate-start")
        path = secrets.write_env(name, new)
        log(f"rotate: new {', '.join(secrets.ROTATED)} in {path.name}")
        journal.update(entry, step="accepting both passwords")
        jn.fault_point("rotate-env")
        lines = _finish(journal, entry, timeout, log)
    lines.append(f"tenant {name} rotated in {time.monotonic() - started:.1f}s")
    return lines


def _finish(journal: jn.Journal, entry: dict, timeout: float, log) -> list[str]:
    """Steps 2-6 (module docstring); each may be repeated, so recover() runs them again after an interruption."""
    name = entry["tenant"]
    both = {user: (digest,) for user, digest in entry["previous"].items()}
    for line in acl_writer.apply(previous=both):
        log(f"rotate: {line} (old and new password both accepted)")
    jn.fault_point("rotate-acl")
    journal.update(entry, step="writing the secret files")
    for line in tenant_files.write(name):
        log(f"rotate: {line}")
    if not entry.get("certificate"):
        log(f"rotate: issued {secrets.new_certificate(name).name} (the old one passes TLS until it expires)")
        journal.update(entry, certificate=True)
    jn.fault_point("rotate-files")
    declared = tenants.declared(name)
    journal.update(entry, step="reloading the tenant's processes")
    rolled = _roll(name, declared.spec.on_postgres, timeout, log)
    jn.fault_point("rotate-reloaded")
    journal.update(entry, step="dropping the old password")
    for line in acl_writer.apply():
        log(f"rotate: {line} (old password dropped)")
    closed = _close_old_connections(entry)
    _check(entry, declared)
    journal.forget(entry)
    return [f"tenant {name}: new Redis password for {', '.join(entry['new'])}, new Django secret key, new database "
            f"password{' (PostgreSQL role renewed)' if declared.spec.on_postgres else ''}, new client certificate",
            f"reloaded in place: {', '.join(rolled) or 'nothing was running'} (no container recreated)",
            f"old password refused; {closed} connection(s) opened before the rotation closed"]


def _roll(name: str, on_postgres: bool, timeout: float, log) -> list[str]:
    """Workers and beat: warm stop (running tasks finish with the connections they hold); a PostgreSQL tenant's role
    gets its new password only then, so no task of theirs ever opens a connection with the old one; the web: graceful
    reload right after; workers and beat start again (same containers), all healthy. Only what runs is touched."""
    web, others = _services(name)
    running = [s for s in (web, *others) if containers.is_running(s)]
    stopped = [s for s in others if s in running]
    for service in stopped:
        log(f"rotate: warm stop of {service} (running tasks finish first; queued ones wait in Redis)")
        containers.warm_stop(service)
    if on_postgres and containers.is_running(naming.POSTGRES_SERVICE):
        # One password per role: open connections stay, new ones need the new password, so the web reloads next.
        postgres_admin.provision(postgres_admin.prepare(tenants.known_names()), log=lambda m: log(f"rotate: {m}"))
    if web in running:
        log(f"rotate: rolling {web}'s gunicorn workers (same socket; new workers read the new files)")
        containers.graceful_reload(web, timeout, log=lambda m: log(f"rotate: {m}"))
    for service in stopped:
        containers.start(service)
    if running:
        health.wait(running, timeout, log=lambda m: log(f"rotate: {m}"))
    return running


def _close_old_connections(entry: dict) -> int:
    """Close the tenant's connections that were open before the rotation began: its own processes' are gone by now
    (reloaded), so what is left was authenticated with the old password by someone else."""
    client = _operator()
    if client is None:
        return 0
    alive = set(_connections(client, set(entry["previous"])))
    closed = 0
    for cid in entry["connections"]:
        if cid in alive:
            closed += int(client.execute_command("CLIENT", "KILL", "ID", str(cid)) or 0)
    return closed


def _check(entry: dict, declared) -> None:
    """Redis keeps exactly the new password's digest for every user; PostgreSQL's verifier matches the new one."""
    client = _operator()
    for user, digest in entry["new"].items():
        if client is None:
            break
        kept = client.acl_getuser(user).get("passwords", [])
        if kept != [digest]:
            raise OpsError(f"Redis user {user} still accepts {len(kept)} password(s) after the rotation, not only the "
                           "new one: run `./invoke recover`")
    if declared.spec.on_postgres and containers.is_running(naming.POSTGRES_SERVICE):
        role = naming.database_role(declared.name)
        stored = postgres_admin.stored_verifiers([role]).get(role, "")
        if not pg_model.scram_matches(secrets.current(declared.name)["DATABASE_PASSWORD"], stored):
            raise OpsError(f"PostgreSQL role {role} does not have the new password after the rotation: "
                           "run `./invoke recover`")


def recover(journal: jn.Journal, entry: dict, log=print, timeout: float = 300) -> list[str]:
    """Finish an interrupted rotation (steps 2-6) once its env file holds the new values; before that nothing
    changed, and the entry is dropped."""
    name = entry["tenant"]
    if name not in tenants.known_names() or secrets.redis_digests(name, secrets.current(name)) != entry["new"]:
        journal.forget(entry)
        return [f"the rotation of tenant {name} stopped before its env file changed: nothing to finish "
                f"(run `./invoke rotate --tenant {name}` again)"]
    log(f"recover: finishing the rotation of tenant {name} (its new secrets are already in its env file)")
    return _finish(journal, entry, timeout, lambda m: log(f"recover: {m}"))
