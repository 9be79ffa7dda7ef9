"""`./invoke tenant-remove <tenant>`: a verified archive of the tenant first, then every trace of it, then a check.

Nothing of the other tenants is restarted: Redis loses the tenant's ACL users live (the one writer,
ops/secrets/acl.py) and leaves its network while running (ops/deploy/live_networks.py), PostgreSQL drops its
database with its sessions and reloads pg_hba.conf. In order:
Each step is journaled (ops/data/journal.py, kind `tenant_remove`) before it starts, with its fault point
`remove-<step>` (TENANTSTACK_FAULT_AT, tests only):
  archive     a verified one-tenant backup (ops/data/tenant_backup.py, the format of `backup --tenant`) under
              backups/archives/<tenant>-<stamp>/, which `backup --keep` never prunes (only backups/<stamp>/ folders)
  containers  its web, worker pools, beat and metrics exporter, and any one-off container of it
  acl         its Redis users (its own, its metrics exporter's): deleted from the live server and the auth file, the
              metrics user's password folder
  keys        every key under its prefix (SCAN + UNLINK in batches, never KEYS)
  files       its env file (its web port goes with it), derived secret files, client certificates, what `up`
              remembers of it; the generated Compose file renders without it. A tenant a committed example declares
              is listed as removed (ops/config/tenants.py), so `init` and `up` do not bring it back
  network     the running servers leave its network (no restart), then the network is removed
  volume      its data volume (its SQLite file)
  image       its project image tag (tenantstack/tenant-<name>:<tag>)
  postgres    when PostgreSQL runs: its database (WITH FORCE), its role and its metrics role; pg_hba.conf re-rendered
  check       remains(): nothing of it may be left; anything is named in one line
Its web, workers and beat are stopped first (journaled), so the archive is its last state; the archive is written
under this operation's lock, its step journaled like the others (fault point `remove-archive`): a removal
interrupted before the archive exists removed nothing, and `recover` starts the stopped services again and forgets
it (the unfinished archive folder is swept). Once it exists, every step is idempotent and `./invoke recover` finishes
the removal from the step the journal names: a half-removed tenant would be a broken one, and its data is safe in
the archive.
"""
import shutil
import time
from pathlib import Path

from deployment import naming
from deployment import postgres as pg_model
from deployment.acl import parse_users
from deployment.instance import PROJECT_LABEL
from ops.config import tenants
from ops.config.envfile import rel
from ops.config.paths import BACKUPS, INSTANCE, REDIS_AUTH_CONF, TLS
from ops.core.errors import OpsError
from ops.core.run import probe, run
from ops.data import backup_format as fmt
from ops.data import journal as jn
from ops.data.journal import fault_point
from ops.deploy import compose, containers, live_networks, postgres_admin, redis_admin, wanted
from ops.secrets import acl

KIND = "tenant_remove"
ARCHIVES = BACKUPS / fmt.ARCHIVES  # never pruned by `backup --keep`
STEPS = ("containers", "acl", "keys", "files", "network", "volume", "image", "postgres", "check")


# ---- what the tenant is made of (every name from the model) -------------------------------------
def _certificates(name: str) -> list[Path]:
    return [TLS / f"{cn}.{ext}" for cn in (naming.redis_user(name), naming.metrics_user(name))
            for ext in ("crt", "key")]


def _files(name: str) -> list[Path]:
    return [tenants.env_path(name), INSTANCE.tenant_secrets(name), *_certificates(name),
            INSTANCE.monitoring_secrets / naming.metrics_user(name)]


def _containers(name: str) -> list[str]:
    """Every container of the instance's project that belongs to the tenant (its services and one-off runs)."""
    out = probe(["docker", "ps", "--all", "--filter", f"label={PROJECT_LABEL}={INSTANCE.compose_project}",
                 "--format", '{{.Names}}\t{{.Label "com.docker.compose.service"}}'], what="listing containers")
    if out.returncode != 0:
        raise OpsError(f"the engine does not list containers ({(out.stderr or '').strip()[:200]}): "
                       "start it with `./invoke engine`, then retry")
    rows = [line.split("\t") for line in out.stdout.splitlines() if "\t" in line]
    return [c for c, service in rows if naming.tenant_of(service) == name]


def _exists(*argv: str) -> bool:
    return probe(["docker", *argv]).returncode == 0


def _postgres_left(name: str) -> list[str]:
    if not containers.is_running(naming.POSTGRES_SERVICE):
        return []
    db = naming.database_name(name)
    roles = [naming.database_role(name), naming.database_metrics_role(name)]
    found = postgres_admin.superuser_query(
        f"SELECT 'database ' || datname FROM pg_catalog.pg_database WHERE datname = '{db}' UNION ALL "
        f"SELECT 'role ' || rolname FROM pg_catalog.pg_roles WHERE rolname IN ({', '.join(map(repr, roles))});\n",
        "looking for the tenant's PostgreSQL database and roles")
    return [f"PostgreSQL {line}" for line in found.splitlines() if line.strip()]


def remains(name: str) -> list[str]:
    """What is left of tenant `name` anywhere in the instance, one item each (empty: nothing)."""
    left = []
    client = redis_admin.operator(timeout=30)
    redis_admin.ping_or_explain(client)
    keys = sum(1 for _ in client.scan_iter(match=naming.key_prefix(name) + "*", count=10_000))
    if keys:
        left.append(f"{keys} Redis keys under {naming.key_prefix(name)}")
    users = {naming.redis_user(name), naming.metrics_user(name)}
    live = set(map(_text, client.execute_command("ACL", "USERS")))
    left += [f"Redis ACL user {u} (live)" for u in sorted(users & live)]
    in_file = parse_users(REDIS_AUTH_CONF.read_text()) if REDIS_AUTH_CONF.exists() else {}
    left += [f"Redis ACL user {u} in {rel(REDIS_AUTH_CONF)}" for u in sorted(users & set(in_file))]
    left += [f"container {c}" for c in _containers(name)]
    if containers.volume_exists(naming.data_volume(name)):
        left.append(f"volume {containers.volume(naming.data_volume(name))}")
    network = INSTANCE.network(naming.tenant_network(name))
    if _exists("network", "inspect", network):
        left.append(f"network {network}")
    if _exists("image", "inspect", INSTANCE.tenant_image(name)):
        left.append(f"image {INSTANCE.tenant_image(name)}")
    left += [f"file {rel(p)}" for p in _files(name) if p.exists()]
    if name in tenants.known_names():
        left.append(f"tenant {name} is still declared ({rel(tenants.example_path(name))})")
    if name in wanted.load()["tenants"]:
        left.append(f"tenant {name} in what `up` starts ({rel(wanted.WANTED)})")
    return left + _postgres_left(name)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# ---- refusals ----------------------------------------------------------------------------------
def check(name: str) -> tenants.Tenant:
    """The tenant to remove, or one line saying why not (nothing changed)."""
    if not naming.is_valid_tenant_name(name) or name not in tenants.known_names():
        known = ", ".join(tenants.known_names()) or "none"
        raise OpsError(f"unknown tenant '{name}': known tenants are {known}; nothing was removed")
    left = jn.load()
    if left is not None:
        raise OpsError(f"an interrupted {left['op']} (pid {left.get('pid')}, {left.get('started')}) is not finished: "
                       f"run `./invoke recover` first, then remove tenant {name}; nothing was removed")
    t = tenants.load(name)
    if t.spec.on_postgres and not containers.is_running(naming.POSTGRES_SERVICE):
        raise OpsError(f"tenant {name} keeps its database on PostgreSQL, which is not running: start it with "
                       f"`./invoke up --tenant {name}` (its archive needs the database), then retry; "
                       "nothing was removed")
    return t


# ---- the operation -----------------------------------------------------------------------------
def write_archive(journal: jn.Journal, state: dict, log=print) -> Path:
    """A verified one-tenant backup under backups/archives/<tenant>-<stamp>/, written under this operation's lock;
    on any failure nothing was removed and the journal forgets the removal."""
    from ops.data import tenant_backup

    fault_point("remove-archive")
    try:
        archive = tenant_backup.create(state["tenant"], parent=ARCHIVES, log=log)
    except BaseException:
        _start_again(state)
        journal.forget(state)
        raise
    journal.update(state, archive=str(archive))
    return archive


def remove(name: str, log=print) -> Path:
    """Archive tenant `name`, then remove every trace of it; returns the archive."""
    t0 = time.monotonic()
    t = check(name)
    with jn.operation("tenant-remove") as journal:
        if name not in tenants.known_names():  # removed by another run between check() and the lock
            raise OpsError(f"unknown tenant '{name}': it was removed meanwhile; nothing was removed")
        state = journal.record(KIND, tenant=name, archive=None, step="archive",
                               services=[*t.services(), naming.metrics_service(name)], profile=t.profile)
        # Stopped first, so the archive is its last state: nothing it writes afterwards can miss the archive.
        log(f"tenant-remove: stopping tenant {name}'s web, workers and beat")
        running = [s for s in t.services() if containers.is_running(s)]
        journal.update(state, stopped=running)
        if running:
            compose.run("stop", *running, profiles=[t.profile])
        log(f"tenant-remove: writing the archive of tenant {name}")
        archive = write_archive(journal, state, log)
        log(f"tenant-remove: archive {rel(archive)} verified")
        _steps(journal, state, log)
    log(f"tenant-remove: tenant {name} removed in {time.monotonic() - t0:.1f}s; nothing of it remains but its "
        f"archive {rel(archive)} (`./invoke tenant-add {name}`, then `./invoke restore {rel(archive)} --tenant "
        f"{name} --yes` brings its data back)")
    return archive


def _start_again(state: dict) -> None:
    """Before its archive exists nothing was removed: the services stopped for it run again."""
    if state.get("stopped"):
        compose.run("start", *state["stopped"], profiles=[state["profile"]])


def _steps(journal: jn.Journal, state: dict, log, start: str = STEPS[0]) -> list[str]:
    """Every step from `start` on, each journaled before it runs; the lines said."""
    said = []

    def say(line: str) -> None:
        said.append(line)
        log(f"tenant-remove: {line}")

    for step in STEPS[STEPS.index(start):]:
        journal.update(state, step=step)
        fault_point(f"remove-{step}")
        STEP[step](state, say)
    journal.forget(state)
    return said


def remove_containers(state: dict, say) -> None:
    name = state["tenant"]
    if tenants.env_path(name).exists():  # as `down --tenant`: stopped with their grace period, then removed
        compose.run("rm", "--stop", "--force", *state["services"],
                    profiles=[state["profile"], compose.MONITORING_PROFILE])
    left = _containers(name)  # one-off containers, or its services once its env file is gone (a finished removal)
    if left:
        run(["docker", "rm", "--force", *left], what=f"removing tenant {name}'s containers")
    say(f"containers removed ({', '.join(state['services'])}{', ' + ', '.join(left) if left else ''})")


def remove_acl_users(state: dict, say) -> None:
    others = [n for n in tenants.known_names() if n != state["tenant"]]
    for line in acl.apply(others):
        say(f"ACL: {line}")


def remove_keys(state: dict, say) -> None:
    client = redis_admin.operator(timeout=60)
    redis_admin.ping_or_explain(client)
    removed = redis_admin.unlink_matching(client, naming.key_prefix(state["tenant"]) + "*")
    say(f"{removed} keys under {naming.key_prefix(state['tenant'])} unlinked (SCAN + UNLINK)")


def remove_files(state: dict, say) -> None:
    name = state["tenant"]
    gone = []
    for path in _files(name):
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        else:
            continue
        gone.append(rel(path))
    if tenants.example_path(name).exists():
        tenants.mark_removed(name)
        gone.append(f"{rel(tenants.example_path(name))} no longer declares it (listed in {rel(tenants.REMOVED)})")
    wanted.remove([name])
    compose.generate()  # the tenants' Compose file without it
    say(f"files removed: {', '.join(gone) or 'none left'}; its web port is free")


def remove_network(state: dict, say) -> None:
    """The running servers leave it live (recorded as live_networks does, so the next `up` does not recreate them),
    then it is removed."""
    network = naming.tenant_network(state["tenant"])
    doc = compose.generate()
    for service in live_networks.SHARED:
        planned = live_networks.plan(service, compose.config_hash, doc)
        if planned is not None and network in planned[2]:
            live_networks.connect(service, planned[0], [], [network], log=say)
        elif _exists("network", "inspect", INSTANCE.network(network)):  # more changed: the next `up` recreates it
            probe(["docker", "network", "disconnect", "--force", INSTANCE.network(network),
                   INSTANCE.container(service)])
    if _exists("network", "inspect", INSTANCE.network(network)):
        run(["docker", "network", "rm", INSTANCE.network(network)], what=f"removing network {network}")
        say(f"network {INSTANCE.network(network)} removed")


def remove_volume(state: dict, say) -> None:
    short = naming.data_volume(state["tenant"])
    if containers.volume_exists(short):
        run(["docker", "volume", "rm", containers.volume(short)], what=f"removing volume {short}")
        say(f"volume {containers.volume(short)} removed")


def remove_image(state: dict, say) -> None:
    image = INSTANCE.tenant_image(state["tenant"])
    if _exists("image", "inspect", image):
        run(["docker", "image", "rm", image], what=f"removing image {image}")
        say(f"image {image} removed")


def remove_postgres(state: dict, say) -> None:
    if not containers.is_running(naming.POSTGRES_SERVICE):
        return  # check() refused a tenant on PostgreSQL without its server; `remains` looks again when it runs
    name = state["tenant"]
    postgres_admin.superuser_sql(pg_model.drop_tenant_sql(name), f"dropping tenant {name}'s database and roles")
    prepared = postgres_admin.prepare(tenants.known_names())  # pg_hba.conf without its line
    postgres_admin.superuser_sql("SELECT pg_catalog.pg_reload_conf();\n", "reloading PostgreSQL's configuration")
    say(f"PostgreSQL: database {naming.database_name(name)} and roles {naming.database_role(name)}, "
        f"{naming.database_metrics_role(name)} dropped (if they existed); configuration reloaded"
        f"{' (pg_hba.conf changed)' if prepared.hba_changed else ''}")


def check_nothing_left(state: dict, say) -> None:
    left = remains(state["tenant"])
    if left:
        raise OpsError(f"tenant {state['tenant']} is not fully removed: {'; '.join(left)}; remove these by hand "
                       "(or fix what stopped it), then run `./invoke recover`")
    say(f"nothing of tenant {state['tenant']} remains")


STEP = {"containers": remove_containers, "acl": remove_acl_users, "keys": remove_keys, "files": remove_files,
        "network": remove_network, "volume": remove_volume, "image": remove_image, "postgres": remove_postgres,
        "check": check_nothing_left}


def recover(journal: jn.Journal, state: dict, log=print) -> list[str]:
    """`./invoke recover`: finish an interrupted removal from the step it reached (its archive exists), or, without
    its archive, forget it: nothing was removed yet."""
    name, archive = state.get("tenant", "?"), state.get("archive")
    if not archive or not (Path(archive) / "manifest.json").exists():
        _start_again(state)
        journal.forget(state)  # its unfinished archive folder, if any, is swept with the other .partial folders
        return [f"the removal of tenant {name} stopped before its archive was written: nothing of it was removed"
                + (f"; its services started again ({', '.join(state['stopped'])})" if state.get("stopped") else "")]
    archive = Path(archive)
    lines = [f"finishing the removal of tenant {name} from step {state['step']} (its archive {rel(archive)} exists)"]
    lines += _steps(journal, state, lambda m: None, start=state.get("step", STEPS[0]))  # the caller says them
    return lines

