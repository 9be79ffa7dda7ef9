"""tenantstack operator tasks. Run them through ./invoke (it prepares the Python environment first).

Every Compose call goes through ops.compose.run, which prints the command before running it.
Operator mistakes end with one line on stderr (`error: ...`) and exit code 2.
"""
import functools
import os
import subprocess
import sys
import time

from invoke import Exit, task

from deployment import naming
from deployment.errors import DeploymentError
from ops.config import tenants
from ops.config.envfile import redis_settings
from ops.config.paths import INSTANCE, ROOT
from ops.core.errors import OpsError
from ops.data import journal
from ops.deploy import compose, connlimit, containers, health, images, postgres_admin, preflight, wanted
from ops.engine import baseimage, isolation
from ops.engine import provision as engine
from ops.secrets import acl, tenant_files
from ops.secrets import generate as secrets


def _fail_cleanly(fn):
    """Turn OpsError into one line on stderr and exit 2; a failed command into its exit code.

    Every task first undoes what an interrupted operation left (ops/data/journal.py; a file check when none).
    """
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            journal.at_task_start(fn.__name__)
            return fn(*args, **kwargs)
        except DeploymentError as exc:  # OpsError and the model's own errors
            raise Exit(f"error: {exc}", code=2) from None
        except subprocess.CalledProcessError as exc:
            raise Exit(f"error: command failed with exit code {exc.returncode}: {' '.join(map(str, exc.cmd))[:300]}",
                       code=exc.returncode or 1) from None
    return wrapper


def _selected(tenant, all_tenants=False) -> list:
    names = tenants.known_names() if all_tenants else list(dict.fromkeys(tenant or []))
    return tenants.load_many(names)


def _need_root(what: str) -> None:
    if os.geteuid() != 0:
        raise OpsError(f"{what} must run as root on this machine (it manages containers and secrets): "
                       "use sudo ./invoke ...")


@task(name="engine", help={
    "kind": "Provision and start this engine even where another one answers: docker (Docker Engine, the "
            "default when none answers) or podman. It gets the default socket only if that is free; "
            "otherwise ./invoke prints the DOCKER_HOST (or docker context) that reaches it."})
@_fail_cleanly
def engine_task(c, kind=None):
    """Find a Docker-API engine with Compose v2, or provision Docker Engine as one; then make the base image."""
    t0 = time.monotonic()
    decision = engine.ensure(kind=kind)
    print(f"engine: {decision.message}")
    baseimage.ensure()
    print(f"engine: ready in {time.monotonic() - t0:.1f}s")


@task(help={"rotate": "Regenerate every password, renamed command name and certificate (restart everything after)."})
@_fail_cleanly
def init(c, rotate=False):
    """Generate missing secrets (env files, private CA, certificates, Redis ACL file); keep what exists."""
    from ops.monitor import textfile

    for line in secrets.init(rotate=rotate):
        print(f"init: {line}")
    textfile.write_certificates()


@task(help={"tools": "Also build the redis-commander image.",
            "monitoring": "Also build the monitoring image (Prometheus, Alertmanager, redis_exporter).",
            "postgres": "Also build the PostgreSQL image (built anyway when a tenant declares DATABASE=postgres)."})
@_fail_cleanly
def build(c, tools=False, monitoring=False, postgres=False):
    """Build the images (redis, the app bases, every tenant's project; redis-commander with --tools, monitoring with
    --monitoring, PostgreSQL with --postgres or when a tenant is on it) from Debian."""
    with_env_file = tenants.load_many([n for n in tenants.known_names() if tenants.env_path(n).exists()])
    _build(tools=tools, tenants_too=with_env_file or True, monitoring=monitoring,
           postgres=postgres or postgres_admin.needed(with_env_file))


def _build(tools: bool, tenants_too, monitoring: bool = False, postgres: bool = False) -> None:
    """Build the images; `tenants_too`: True (the base images), or the tenants whose project images to build too."""
    engine.ensure()
    baseimage.ensure()
    # The tenants' metrics exporters run the app base image: monitoring needs it too.
    bases = ["app", "app-build"] if tenants_too or monitoring else []
    services = ["redis", *bases] + (["redis-commander"] if tools else [])
    services += [naming.PROMETHEUS_SERVICE] if monitoring else []  # the build definition of the monitoring image
    services += [naming.POSTGRES_SERVICE] if postgres else []
    profiles = ["build"] + ([compose.TOOLS_PROFILE] if tools else []) + \
        ([compose.MONITORING_PROFILE] if monitoring else []) + ([naming.POSTGRES_PROFILE] if postgres else [])
    compose.run("build", *services, profiles=profiles)
    if tenants_too and tenants_too is not True:  # after the bases: each project's image starts FROM them
        images.build_tenants(tenants_too, log=lambda m: print(f"build: {m}"))


@task(iterable=["tenant"], help={
    "tenant": "Tenant to start (repeatable: --tenant a --tenant b). Redis always starts. Without any: what "
              "`up` started before (after a reboot too).",
    "all": "Start every known tenant.",
    "tools": "Also start the tools profile (redis-commander on 127.0.0.1, the instance's tools port).",
    "monitoring": "Also start the monitoring profile: Prometheus and Alertmanager on 127.0.0.1 (the instance's "
                  "ports), redis_exporter, the alert receiver and a metrics exporter per started tenant. Once "
                  "started it stays on for later `up` calls until `down --monitoring`.",
    "timeout": "Seconds to wait for every service to turn healthy.",
})
@_fail_cleanly
def up(c, tenant=None, all=False, tools=False, monitoring=False, timeout=300):
    """Start Redis and the given tenants' web, worker and beat; wait until all are healthy.

    On a fresh clone it first generates whatever is missing (env files, certificates, the auth file).
    With no tenant named, it starts what earlier `up` calls started (and `down` did not stop): after a
    reboot on Podman without systemd, this brings back the engine's API service, the healthcheck runner
    and every service. With --monitoring (or once monitoring was started) it renders the monitoring
    configuration from envs/monitoring.env and starts the profile.
    """
    from ops.monitor import profile, textfile

    _need_root("up")
    t0 = time.monotonic()
    if secrets.missing():  # before loading any tenant: a fresh clone has no env files yet
        init(c)
    remembered = wanted.load()
    if not tenant and not all:
        tenant = [n for n in remembered["tenants"] if n in tenants.known_names()]
        tools = tools or remembered["tools"]
    monitoring = monitoring or remembered["monitoring"]
    selected = _selected(tenant, all)
    engine.ensure()
    for line in acl.apply(tenants.known_names()):  # the env files are the source; re-derive Redis' rules
        print(f"up: {line}")
    # ... and the containers' env files and secret files (this also migrates a deployment made before them).
    stale = _derive_tenant_files(selected)
    secrets.check_all(tenants.known_names())
    # PostgreSQL's connection budget (one line, before anything is built or started) and its rendered pg_hba.conf.
    pg = postgres_admin.prepare(tenants.known_names(), selected)
    textfile.write_certificates()  # fresh at every up: certificates may have been reissued
    if monitoring:  # validates envs/monitoring.env before anything is built or started
        watched = sorted({t.name for t in selected} | {n for n in remembered["tenants"] if n in tenants.known_names()})
        changed = profile.prepare(watched)  # the exporters of every tenant this and earlier `up` calls started
    preflight.check_ports(selected, tools=tools, monitoring=monitoring)
    _build(tools=tools, tenants_too=selected or False, monitoring=monitoring, postgres=pg.needed)
    profiles, services = _started(selected, tools, pg.needed)
    if monitoring:
        before = profile.started_at(profile.RELOADS)
        profiles += [compose.MONITORING_PROFILE]
        services += profile.services(watched)
    containers.stop_beats_without_grace([t.name for t in selected], log=lambda m: print(f"up: {m}"))
    _stop_stale(stale, selected, profiles)
    _start_postgres(pg, float(timeout))  # when needed: roles, databases and pg_hba.conf before their migrations run
    compose.run("up", "--detach", "--remove-orphans=false", *services, profiles=profiles)
    isolation.apply(log=lambda m: print(f"up: {m}"))  # provisioned Podman only: see ops/engine/isolation.py
    connlimit.apply(tenants.known_names(), log=lambda m: print(f"up: {m}"))  # Redis 7.0 has no per-user cap
    if monitoring:
        profile.reload_changed(before, changed, log=lambda m: print(f"up: {m}"))
    health.wait(services, float(timeout))
    wanted.add([t.name for t in selected], tools, monitoring)
    journal.at_task_start("up")  # Redis answers now: undo what an interrupted backup left, if the start could not
    print(f"up: {', '.join(services)} healthy in {time.monotonic() - t0:.1f}s")
    for t in selected:
        print(f"up: tenant {t.name}: http://127.0.0.1:{t.web_port}/healthz")
    if monitoring:
        print(f"up: Prometheus: http://127.0.0.1:{INSTANCE.prometheus_port}/classic/graph, "
              f"Alertmanager: http://127.0.0.1:{INSTANCE.alertmanager_port}/api/v2/alerts")


def _derive_tenant_files(selected: list) -> list[str]:
    """Every tenant's container env and secret files from its env file. A running tenant whose secrets changed holds
    the old ones (and PostgreSQL gets a changed password from this `up`): it joins `selected`, selected or not, and
    its name is returned for _stop_stale."""
    rewritten = []
    for line in tenant_files.write_all(tenants.known_names(), changed=rewritten):
        print(f"up: {line}")
    stale = [n for n in rewritten if containers.is_running(naming.service_name(n, "web"))]
    selected += [t for t in tenants.load_many(stale) if t.name not in {s.name for s in selected}]
    return stale


def _stop_stale(stale: list[str], selected, profiles) -> None:
    """Stop the stale tenants' services, so this `up` starts them again reading their new secrets."""
    if stale:
        print(f"up: secrets of tenant {', '.join(stale)} changed: restarting its services to read them")
        compose.run("stop", *[s for t in selected if t.name in stale for s in t.services()], profiles=profiles)


def _started(selected, tools: bool, on_postgres: bool) -> tuple[list[str], list[str]]:
    """(profiles, services) of an `up` without monitoring: Redis, PostgreSQL when a selected tenant is on it, the
    tenants' services, the tools."""
    profiles = [t.profile for t in selected] + ([compose.TOOLS_PROFILE] if tools else [])
    profiles += compose.postgres_profiles(selected)
    services = ["redis", *([naming.POSTGRES_SERVICE] if on_postgres else [])]
    services += [s for t in selected for s in t.services()]
    services += ["redis-commander"] if tools else []
    return profiles, services


def _start_postgres(pg: postgres_admin.Prepared, timeout: float) -> None:
    """When a tenant being started is on PostgreSQL: the server alone first (running already: left as it is, a new
    tenant's network joins later, live), healthy, then its roles and databases in step and its configuration reloaded.
    """
    if not pg.needed:
        return
    compose.run("up", "--detach", "--remove-orphans=false", naming.POSTGRES_SERVICE,
                profiles=[naming.POSTGRES_PROFILE])
    health.wait([naming.POSTGRES_SERVICE], timeout)
    postgres_admin.provision(pg, log=lambda m: print(f"up: {m}"))


@task(iterable=["tenant"], help={
    "tenant": "Stop only this tenant's services (repeatable), its metrics exporter too. Without it, stop everything.",
    "monitoring": "Stop only the monitoring profile (its data volumes are kept).",
    "volumes": "Also delete the named volumes (ALL DATA). Needs --yes.",
    "yes": "Confirm --volumes.",
})
@_fail_cleanly
def down(c, tenant=None, monitoring=False, volumes=False, yes=False):
    """Stop and remove containers; data volumes are kept unless --volumes --yes."""
    if volumes and not yes:
        raise OpsError("--volumes deletes Redis data and every tenant database: add --yes to confirm")
    if tenant or monitoring:
        selected = _selected(tenant)
        services = [s for t in selected for s in t.services()]
        services += [naming.metrics_service(t.name) for t in selected]
        if monitoring:
            services += [*naming.MONITORING_SERVICES, naming.POSTGRES_EXPORTER_SERVICE,
                         *map(naming.metrics_service, tenants.known_names())]
        compose.run("rm", "--stop", "--force", *dict.fromkeys(services),
                    profiles=[t.profile for t in selected] + [compose.MONITORING_PROFILE])
        wanted.remove([t.name for t in selected])
        if monitoring:
            wanted.forget_monitoring()
        return
    compose.run("down", *(["--volumes"] if volumes else []), profiles=compose.all_profiles())
    wanted.clear()


@task
@_fail_cleanly
def ps(c):
    """Show every service of the deployment with its state and health."""
    compose.run("ps", "--all", profiles=compose.all_profiles())


@task(iterable=["tenant"], help={
    "tenant": "Only this tenant's services (repeatable).",
    "service": "Only this role (web, worker, beat) or service name (redis, redis-commander).",
    "follow": "Keep streaming new lines.",
    "tail": "Lines to show from the end of each log.",
})
@_fail_cleanly
def logs(c, tenant=None, service=None, follow=False, tail="200"):
    """Show service logs."""
    selected = _selected(tenant)
    if service in compose.ROLES:
        every = selected or tenants.load_many(tenants.known_names())
        names = [s for t in every for s in t.services() if naming.tenant_of(s) and s.startswith(t.service(service))]
    elif service:
        names = [service]
    else:
        names = [s for t in selected for s in t.services()]
    args = ["logs", "--tail", str(tail), *(["--follow"] if follow else []), *names]
    compose.run(*args, profiles=compose.all_profiles())


@task(help={"name": "Short tenant name: a lowercase letter, then up to 14 lowercase letters or digits.",
            "port": "Host port of its web service on 127.0.0.1 (default: the next free one of the instance's block).",
            "project": "Folder of the tenant's own Django + Celery project, with a Dockerfile made from "
                       "app/project-template/Dockerfile (default: the example project, app/example).",
            "django_settings": "The project's Django settings module, e.g. config.settings.production.",
            "celery_app": "The project's Celery app as module:attribute, e.g. config.celery_app:app.",
            "wsgi_app": "The project's WSGI application as module:attribute, e.g. config.wsgi:application.",
            "roles": "Redis roles beyond the broker, comma-separated: cache, results, pubsub.",
            "queues": "The tenant's Celery queues, comma-separated, the default queue first.",
            "pools": "Worker pools as name:queue+queue:concurrency, comma-separated; the first is `default`.",
            "database": "sqlite (default: a file on the tenant's volume) or postgres (its own database and role "
                        "on the deployment's PostgreSQL)."})
@_fail_cleanly
def tenant_add(c, name, port=0, project="", django_settings="", celery_app="", wsgi_app="", roles="", queues="",
               pools="", database=""):
    """Add a tenant: env file with fresh secrets (and its project, roles, queues, pools), client certificate,
    Redis ACL user (applied live). `./invoke up --tenant NAME` then builds its project's image and starts it."""
    from ops.secrets import tenant_add as tenant_admin

    _need_root("tenant-add")
    from ops.monitor import textfile

    given = {"project": project, "django_settings": django_settings, "celery_app": celery_app,
             "wsgi_app": wsgi_app, "roles": ",".join(["broker", roles]) if roles else "", "queues": queues,
             "pools": pools, "database": database}
    for line in tenant_admin.add(name, int(port or 0), **given):
        print(f"tenant-add: {line}")
    textfile.write_certificates()  # its two new certificates (its own, its metrics exporter's)


@task(help={"name": "The tenant to remove.",
            "yes": "Do not ask for confirmation (required when stdin is not a terminal)."})
@_fail_cleanly
def tenant_remove(c, name, yes=False):
    """Remove a tenant for good, after writing a verified archive of it under backups/archives/.

    Its containers, Redis ACL users (live and in the auth file), keys (SCAN + UNLINK), volume, image, PostgreSQL
    database and roles, env file (and so its web port), secret files, certificates and metrics user are removed;
    the running Redis and PostgreSQL leave its network without a restart, and no other tenant's service is touched.
    Then nothing of it may remain but the archive (checked). An interrupted removal is finished by `./invoke
    recover` once the archive exists. `./invoke tenant-add NAME` and `./invoke restore ARCHIVE --tenant NAME`
    bring it back.
    """
    from ops.data import tenant_remove as removal
    from ops.monitor import profile, textfile

    _need_root("tenant-remove")
    removal.check(name)  # bad input: one line before anything is asked
    if not yes:
        if not sys.stdin.isatty():
            raise OpsError(f"tenant-remove deletes tenant {name}'s data (an archive is kept) and stdin is not a "
                           "terminal: add --yes to confirm")
        if input(f"Remove tenant {name} and all its data (an archive is written first)? [y/N] ").strip().lower() \
                not in ("y", "yes"):
            raise OpsError("tenant-remove cancelled: nothing was changed")
    removal.remove(name)
    textfile.write_certificates()  # its two certificates are gone
    remembered = wanted.load()
    if remembered["monitoring"]:  # Prometheus stops scraping its metrics exporter
        before = profile.started_at(profile.RELOADS)
        watched = [n for n in remembered["tenants"] if n in tenants.known_names()]
        profile.reload_changed(before, profile.prepare(watched), log=lambda m: print(f"tenant-remove: {m}"))


@task(help={"name": "The tenant whose data to move (it must be running, on SQLite).",
            "to": "Where to move it: postgres (its own database and role on the deployment's PostgreSQL).",
            "timeout": "Seconds to wait for PostgreSQL and for the tenant's services to turn healthy."})
@_fail_cleanly
def tenant_migrate_db(c, name, to="", timeout=300):
    """Move a SQLite tenant's data (results and its project's tables) to its own PostgreSQL database.

    The tenant serves on SQLite while PostgreSQL is prepared and its migrations run there; its web, workers and beat
    stop only for the copy (every table in one transaction, every row count compared, sequences reset), then its env
    file says DATABASE=postgres and it starts again. Any failure before that switch rolls back (the tenant stays on
    SQLite); an interrupted run is rolled back or finished by `./invoke recover`. The SQLite file stays on the
    tenant's volume until you remove it.
    """
    from ops.data import migrate_db

    _need_root("tenant-migrate-db")
    if not to:
        raise OpsError(f"say where to move tenant {name}'s data: --to postgres")
    try:
        timeout = float(timeout)
    except ValueError:
        raise OpsError(f"--timeout {timeout!r} is not a number of seconds") from None
    migrate_db.migrate(name, to, timeout=timeout)


@task(help={"tenant": "The one tenant whose secrets to renew (its processes keep serving; no other tenant is touched).",
            "timeout": "Seconds to wait for each of its reloaded services to turn healthy again."})
@_fail_cleanly
def rotate(c, tenant="", timeout=300):
    """Renew one tenant's secrets while it serves: Redis password, Django secret key, database password, certificate.

    Both Redis passwords are accepted while its processes roll: the web reloads gracefully (same socket, new workers
    read the new secret files), workers and beat stop warm and start again (running tasks finish; queued ones wait;
    same containers). Then the old
    password is refused and connections opened with it before the rotation are closed. A PostgreSQL tenant's role
    gets the new password too. The new client certificate is issued by the same CA: the server binds no certificate
    to a user, so the old one passes TLS until it expires (the password is what is revoked). Rotating the secret key
    logs the tenant's users out. An interrupted run is finished by `./invoke recover`.
    Unlike `init --rotate`, which regenerates every secret of the instance (every tenant, the CA, the operator's and
    monitoring passwords) and needs everything restarted, this touches one tenant and recreates no container.
    """
    from ops.data import rotate as rotation
    from ops.monitor import textfile

    _need_root("rotate")
    if not tenant:
        raise OpsError("say which tenant to rotate: --tenant <name> (`init --rotate` renews every tenant's secrets)")
    try:
        timeout = float(timeout)
    except ValueError:
        raise OpsError(f"--timeout {timeout!r} is not a number of seconds") from None
    for line in rotation.rotate(tenant, timeout=timeout):
        print(f"rotate: {line}")
    textfile.write_certificates()  # the tenant's new certificates' expiry, for the monitoring rule


@task(help={"k": "Only tests matching this pytest -k expression.",
            "fast": "Skip the tests that need real containers.",
            "x": "Stop at the first failure."})
@_fail_cleanly
def test(c, k="", fast=False, x=False):
    """Run the whole test suite (real Redis, real Celery workers, real containers) on a throwaway instance.

    The suite gets an instance of its own (test-<random>: own Compose project, port block, secrets,
    backups, volumes), removed at the end, also after a failure or Ctrl-C; one left by a killed run is
    removed by the next. No other instance, the default one included, is read or changed.
    """
    from deployment import ports
    from deployment.instance import INSTANCE_VAR
    from ops.deploy import instances
    from ops.engine import testenv

    # Even the fast tests run what ships: the server image's Valkey, the monitoring image's promtool and
    # exporter (tests/support/image_rootfs.py). So the engine and the instance's images come first.
    _need_root("the tests (they run the images' own server and tools)")
    engine.ensure()
    baseimage.ensure()
    testenv.ensure_host_packages()
    instances.sweep_abandoned(log=lambda m: print(f"test: {m}", flush=True))
    name = f"test-{os.urandom(3).hex()}"
    env = {**os.environ, INSTANCE_VAR: name, ports.THROWAWAY_VAR: str(os.getpid())}
    env.pop("COMPOSE_PROJECT_NAME", None)
    print(f"test: building instance {name}'s images (server, app, monitoring)", flush=True)
    built = subprocess.run([str(ROOT / "invoke"), "build", "--monitoring", "--postgres"], cwd=ROOT, env=env,
                           check=False)
    if built.returncode:
        instances.remove(name, log=lambda m: print(f"test: {m}", flush=True))
        raise Exit(f"error: building the test instance's images failed (exit {built.returncode}): see above", code=2)
    argv = [sys.executable, "-m", "pytest", "-ra", "--durations=12", *(["-k", k] if k else []),
            *(["-m", "not containers"] if fast else []),
            *(["-x"] if x else [])]
    print(f"test: on throwaway instance {name} (instance {INSTANCE.name} is left alone)", flush=True)
    print("+ " + " ".join(argv), flush=True)
    proc = subprocess.Popen(argv, cwd=ROOT, env=env)
    try:
        while True:
            try:
                code = proc.wait()
                break
            except KeyboardInterrupt:  # pytest got it too: let it finish its teardown first
                print("test: interrupted: waiting for pytest to stop, then removing the test instance", flush=True)
    finally:
        try:
            instances.remove(name, log=lambda m: print(f"test: {m}", flush=True))
        except OpsError as exc:  # the suite's own verdict stays the exit code; say what is left behind
            print(f"test: {exc}", flush=True)
    if code:
        raise Exit(code=code)


@task
@_fail_cleanly
def lint(c):
    """Run every linter (ruff, shellcheck, hadolint, yamllint, Compose spec validation): zero findings or exit 1."""
    from ops import lint as linters

    failed = linters.run_all()
    if failed:
        raise Exit(f"lint: findings from {', '.join(failed)}", code=1)
    print("lint: all clean")


@task
@_fail_cleanly
def instances(c):
    """List the instances on this host: name, port block, kind (default, named, throwaway), containers, checkout."""
    from ops.deploy import instances as inst

    for line in inst.listing() or ["no instance has been used on this host yet"]:
        print(line)


@task(help={"name": "The instance to remove (never the default one).", "yes": "Confirm: its data is deleted."})
@_fail_cleanly
def instance_remove(c, name, yes=False):
    """Remove a non-default instance whole: containers, volumes, networks, image tags, its files, its port block."""
    from ops.deploy import instances as inst

    _need_root("instance-remove")
    if not yes:
        raise OpsError(f"instance-remove deletes every container, volume, secret and backup of instance {name}: "
                       "add --yes to confirm")
    inst.remove(name)


@task(help={"timeout": "Seconds to wait for the snapshot before failing."})
@_fail_cleanly
def bgsave(c, timeout=600):
    """Take a fresh RDB snapshot now and wait until Redis confirms it (LASTSAVE moved, status ok)."""
    from ops.data import bgsave as bg
    from ops.deploy import redis_admin

    client = redis_admin.operator(timeout=30)
    redis_admin.ping_or_explain(client)
    bg.bgsave(client, timeout=float(timeout))


@task(iterable=["tenant"], help={
    "keep": "How many complete whole backups to keep (oldest removed only after the new one verified; default: "
            "BACKUP_KEEP_WHOLE of envs/backup.env, 7); one-tenant backups (backups/tenant-<t>/) and archives are "
            "never pruned by it.",
    "tenant": "Back up only this tenant (repeatable): its Redis keys and database, under backups/tenant-<t>/; "
              "nothing server-wide, the other tenants never notice."})
@_fail_cleanly
def backup(c, keep=None, tenant=None):
    """Back up Redis (RDB + AOF, one consistent instant) and every running tenant's database, verified; or, with
    --tenant, one tenant's keys and database (restore it with `restore BACKUP --tenant T`)."""
    if tenant:
        from ops.data import tenant_backup

        for name in tenant:
            tenant_backup.create(name)
        return
    from ops.config import backup_policy
    from ops.data import backup as bk
    from ops.monitor import textfile

    bk.create(keep=int(keep) if keep is not None else backup_policy.load().keep_whole)
    textfile.write_backup()  # what the BackupMissing alert reads (it never sees the root-only backups folder)


@task(name="backup-schedule", help={
    "once": "One run of the policy and exit (for cron): non-zero when any backup or copy failed.",
    "every": "Loop at this interval instead of BACKUP_EVERY (e.g. 6h; the alert still follows BACKUP_EVERY)."})
@_fail_cleanly
def backup_schedule(c, once=False, every=None):
    """Take backups by the policy of envs/backup.env: a whole backup, each BACKUP_TENANTS tenant's own, retention
    (archives never), then BACKUP_COPY_COMMAND on each; one line per run in backups/schedule.log.

    Without --once it runs forever (under the operator's supervisor, tmux or `nohup`), a run every BACKUP_EVERY.
    """
    from deployment.durations import parse_duration
    from ops.data import schedule
    from ops.monitor import textfile

    def metrics():  # BackupMissing's and BackupCopyFailed's metrics, after every run
        textfile.write_backup()
        textfile.write_copy()

    if once:
        if every is not None:
            raise OpsError("--every is for the loop; with --once the crontab sets the interval: drop one of them")
        run = schedule.once(after_run=metrics)
        if not run.ok:
            raise OpsError(f"backup-schedule: {'; '.join(run.failures)}")
        return
    try:
        seconds = int(parse_duration(every).total_seconds()) if every is not None else None
    except ValueError as exc:
        raise OpsError(f"--every {exc}") from None
    schedule.forever(after_run=metrics, every=seconds)


@task(help={"backup": "Folder name under backups/ (or a path) of the backup to restore; with --tenant also a folder "
                      "of backups/tenant-<t>/ or backups/archives/.",
            "yes": "Do not ask for confirmation (required when stdin is not a terminal).",
            "tenant": "Restore only this tenant's keys and database (from a whole or a one-tenant backup); its "
                      "services stop meanwhile, every other tenant keeps serving."})
@_fail_cleanly
def restore(c, backup, yes=False, tenant=None):
    """Restore a verified backup: Redis (RDB + AOF) and tenant databases; current data is kept aside first.
    With --tenant, only that tenant: its keys (RESTORE) and database; its current data kept as a pre-restore copy."""
    def confirm(question: str) -> None:
        if not sys.stdin.isatty():
            raise OpsError("restore replaces live data and stdin is not a terminal: add --yes to confirm")
        if input(f"{question} [y/N] ").strip().lower() not in ("y", "yes"):
            raise OpsError("restore cancelled: nothing was changed")

    if tenant:
        from ops.data import tenant_restore

        tenant_restore.restore(backup, tenant, assume_yes=yes, confirm=confirm)
        return
    from ops.data import restore as rs

    rs.restore(backup, assume_yes=yes, confirm=confirm)


@task(help={"rollback": "Roll an interrupted restore (whole or one tenant's) back to the data from before it, instead "
                        "of finishing it."})
@_fail_cleanly
def recover(c, rollback=False):
    """Finish or undo what an interrupted backup, restore, rotate or tenant-migrate-db left; say what was found, done.

    A backup's paused AOF rewrites and write pause are put back and its unfinished folder removed; an
    interrupted restore, whole or one tenant's, is finished (or, with --rollback, undone from its pre-restore copy)
    and the services it stopped are started again. An interrupted tenant-migrate-db is rolled back (the tenant on
    SQLite, its new PostgreSQL database dropped, its services started), or finished once its env file
    says DATABASE=postgres. An interrupted rotate is finished (its new secrets are already in the env file). An
    interrupted tenant-remove is finished once its archive exists (before that nothing was removed, and it is
    forgotten). Safe to run any time: with nothing to do it says so.
    """
    from ops.data import recover as recovery

    _need_root("recover")
    for line in recovery.recover(rollback=rollback):
        print(f"recover: {line}")


@task(iterable=["tenant"], help={
    "tenant": "Tenant whose results to flush (repeatable).",
    "all_tenants": "Every known tenant.",
    "older_than": "Age of what to delete: a whole number followed by s, m, h, d or w (e.g. 7d).",
    "dry_run": "Count what would be deleted; delete nothing.",
    "batch_size": "Rows per delete transaction.",
})
@_fail_cleanly
def flush_results(c, tenant=None, all_tenants=False, older_than="7d", dry_run=False, batch_size=5000):
    """Delete old task/group results in batches, and stale Celery keys under the tenant's Redis prefix."""
    from deployment.durations import parse_duration
    from ops.data import flush as redis_artifacts
    from ops.deploy import containers, redis_admin

    try:
        age = parse_duration(older_than)
    except ValueError as exc:
        raise OpsError(f"--older-than {exc}") from None
    selected = _selected(tenant, all_tenants)
    if not selected:
        raise OpsError("name a tenant with --tenant NAME, or use --all-tenants")
    not_running = [t.name for t in selected if not containers.is_running(t.service("web"))]
    if not_running:
        raise OpsError(f"tenant {', '.join(not_running)} is not running: start it with "
                       f"`./invoke up {' '.join('--tenant ' + n for n in not_running)}` "
                       "(its database lives in its volume)")
    client = redis_admin.operator(timeout=30)
    redis_admin.ping_or_explain(client)
    for t in selected:
        compose.run("exec", "-T", t.service("web"), "python", "-m", "tenantstack.manage", "flush_results",
                    "--older-than", older_than, "--batch-size", str(int(batch_size)),
                    *(["--dry-run"] if dry_run else []), profiles=[t.profile])
        report = redis_artifacts.flush(client, t.name, age, dry_run=dry_run)
        verb = "would remove" if dry_run else "removed"
        print(f"flush-results: tenant {t.name}: Redis: {verb} {report['found'] if dry_run else report['removed']} "
              f"stale keys under {t.name}'s prefix in {report['seconds']:.2f}s")


@task(help={"json": "Print one JSON object (for scripts) instead of the table.",
            "watch": "Redraw every --interval seconds until Ctrl-C.",
            "interval": "Seconds between redraws with --watch."})
@_fail_cleanly
def status(c, json=False, watch=False, interval=5.0):
    """One screen for operators, without Prometheus: per tenant and Redis, backups and certificates.

    Per tenant: queue depth, unacked, oldest queued task, workers alive, last task, failures in the last
    hour. Redis: memory vs maxmemory, clients, persistence, last save, uptime. The last verified backup and
    its age; every certificate's expiry. What an alert would fire on (envs/monitoring.env's thresholds) is
    red, and the exit code is 1 then (0 when all is well).
    """
    from ops.monitor import status as screen

    _need_root("status")  # envs/redis.env, the backups and the engine are root's
    try:
        interval = float(interval)
    except ValueError:
        raise OpsError(f"--interval {interval!r} is not a number of seconds") from None
    if interval <= 0:
        raise OpsError(f"--interval must be more than 0 seconds (got {interval:g})")
    code = screen.show(as_json=json, watch=watch, interval=interval)
    if code:
        raise Exit(code=code)


@task
@_fail_cleanly
def tools_login(c):
    """Show how to open redis-commander (tools profile, `./invoke up --tools`): its URL, user and password."""
    from ops.secrets import commander as tools

    _need_root("tools-login")  # envs/redis.env is readable by root only
    for line in tools.login_lines(redis_settings()):
        print(f"tools-login: {line}")


@task(help={"n": "No-op tasks per burst (A, B and C each, every round; default 5000).",
            "rounds": "Interleaved rounds A B C A B C ... (default 3).",
            "keys": "Keys in the backup/restore dataset (default 1000000).",
            "rows": "Stale result rows for the flush comparison (default 1000000).",
            "quick": "Tiny sizes: checks that every section works (the test suite runs this).",
            "only": "Run one section: idle, throughput, latency, memory, flush, backup or monitoring "
                    "(merged into results.json).",
            "readme": "Rewrite the README's performance table from the last results.json; runs nothing."})
@_fail_cleanly
def bench(c, n=None, rounds=None, keys=None, rows=None, quick=False, only=None, readme=False):
    """Measure what the deployment costs, as side-by-side ratios and cost per task; write bench/results.json."""
    import json

    from ops.bench import readme as bench_readme
    from ops.bench import run as b

    if readme:
        if not b.RESULTS.exists():
            raise OpsError(f"no bench results yet ({b.RESULTS}): run `./invoke bench` first")
        bench_readme.rewrite(json.loads(b.RESULTS.read_text()))
        print(f"bench: README.md performance table rewritten from {b.RESULTS}")
        return
    if only and only not in b.SECTIONS:
        raise OpsError(f"--only {only!r} is not a section: use one of {', '.join(b.SECTIONS)}")
    cfg = dict(b.QUICK if quick else b.FULL)
    for flag, value in (("n", n), ("rounds", rounds), ("keys", keys), ("rows", rows)):
        shown = f"-{flag}" if len(flag) == 1 else f"--{flag}"
        if value is None:
            continue
        try:
            cfg[flag] = int(value)
        except ValueError:
            raise OpsError(f"{shown} {value!r} is not a whole number") from None
        if cfg[flag] < 1:
            raise OpsError(f"{shown} must be at least 1 (got {cfg[flag]})")
    _need_root("bench")
    up(c, tenant=["a", "b"])  # the deployment as it ships, built from this checkout and healthy
    b.run(cfg, only)
