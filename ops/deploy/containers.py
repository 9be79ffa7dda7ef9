"""Containers and volumes through the engine, outside Compose: moving files in and out of them (while they run
or not), and stopping what Compose would stop too abruptly."""
import io
import json
import os
import signal
import tarfile
import uuid
from pathlib import Path

from deployment import naming
from deployment.instance import PROJECT_LABEL
from ops.config.paths import COMPOSE_PROJECT, INSTANCE
from ops.core.errors import OpsError
from ops.core.run import probe, run, stream


def name(service: str) -> str:
    return INSTANCE.container(service)


def volume(short: str) -> str:
    return INSTANCE.volume(short)


def volume_exists(short: str) -> bool:
    return probe(["docker", "volume", "inspect", volume(short)]).returncode == 0


def ensure_volume(short: str) -> None:
    """Create a project volume the way Compose would (same labels), so Compose adopts it later."""
    if not volume_exists(short):
        run(["docker", "volume", "create", "--label", f"{PROJECT_LABEL}={COMPOSE_PROJECT}",
             "--label", f"com.docker.compose.volume={short}", volume(short)], what=f"creating volume {volume(short)}")


def is_running(service: str) -> bool:
    out = probe(["docker", "inspect", "--format", "{{.State.Running}}", name(service)])
    return out.returncode == 0 and out.stdout.strip() == "true"


def exec_stream(service: str, argv: list[str], dest, progress=None) -> int:
    """Run argv in the service's container, copying its stdout into file object `dest`. Returns bytes."""
    return stream(["docker", "exec", name(service), *argv], dest, progress=progress,
                  what=f"`{' '.join(argv[:3])}` in {name(service)}")


def copy_out(service: str, directory: str, members: list[str], dest: Path, progress=None) -> int:
    """tar the members of `directory` inside the running container and unpack them under dest."""
    buf = io.BytesIO()
    size = exec_stream(service, ["tar", "-C", directory, "-cf", "-", *members], buf, progress)
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tar:
        tar.extractall(dest, filter="data")
    return size


JOB_OWNER_LABEL = "org.tenantstack.job-owner"  # the pid of the ops process that started a volume job
JOB_INSTANCE_LABEL = "org.tenantstack.job-instance"  # its instance: `instance-remove` finds its jobs by it


def volume_job(image: str, user: str, mounts: dict[str, str], script: str, timeout: float = 1800) -> str:
    """Run a shell script in a throwaway container with the given mounts (host path or volume -> target).

    No --rm: Podman 4.3's Docker API reports exit code 0 for `docker run --rm` whatever happened, so the
    exit code is read from the stopped container instead. A job outlives an ops process killed while it
    runs (the engine owns it): sweep_orphan_jobs() removes it before anything repeats that step.
    """
    job = f"{COMPOSE_PROJECT}-job-{uuid.uuid4().hex[:8]}"
    argv = ["docker", "run", "--name", job, "--label", f"{JOB_OWNER_LABEL}={os.getpid()}", "--label",
            f"{JOB_INSTANCE_LABEL}={INSTANCE.name}", "--network", "none", "--user", user, "--entrypoint", "sh"]
    for source, target in mounts.items():
        argv += ["-v", f"{source}:{target}"]
    try:
        done = probe([*argv, image, "-euc", script], timeout=timeout, what=f"volume job in {image}")
        code = json.loads(probe(["docker", "inspect", "--format", "{{json .State.ExitCode}}", job]).stdout or "1")
        if done.returncode != 0 or code != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise OpsError(f"volume job in {image} failed (exit {code or done.returncode}): {last}")
        return done.stdout
    finally:
        probe(["docker", "rm", "-f", "-v", job])


def _alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def sweep_orphan_jobs() -> list[str]:
    """Remove this instance's volume jobs whose ops process is gone (killed mid-job): one line for each.

    A job left running would go on writing into a volume (a restore's put-back) while recover repeats the
    step; jobs of live processes (another operation, another checkout) are never touched.
    """
    out = probe(["docker", "ps", "-a", "--filter", f"name=^{COMPOSE_PROJECT}-job-", "--filter",
                 f"label={JOB_OWNER_LABEL}", "--format", f'{{{{.Names}}}} {{{{.Label "{JOB_OWNER_LABEL}"}}}}'])
    lines = []
    for row in (out.stdout or "").splitlines():
        job, _, owner = row.partition(" ")
        if job.startswith(f"{COMPOSE_PROJECT}-job-") and not _alive(owner):
            probe(["docker", "rm", "-f", "-v", job])
            lines.append(f"removed the volume job {job} that a killed run (pid {owner}) left")
    return lines


BEAT_STOP_GRACE = 10  # compose/tenant.yaml's stop_grace_period of beat, in seconds


def stop_beats_without_grace(names, log=print) -> list[str]:
    """Stop running beats whose container has no stop grace period, with SIGTERM and time to save their schedule.

    Celery beat writes its schedule file only when it closes it. Through Podman's Docker API a container created
    without stop_grace_period (every beat of the previous release) has a stop timeout of 0, and Compose's
    recreate stops a container with its own timeout: the upgrade would kill beat outright and lose its schedule.
    Containers created from today's compose/tenant.yaml have the grace period: nothing to do for them.
    One `docker inspect` for every beat; a beat that does not exist yet is simply not listed."""
    beats = [INSTANCE.container(naming.service_name(n, "beat")) for n in names]
    if not beats:
        return []
    out = probe(["docker", "inspect", "--format", "{{.Name}} {{.State.Running}} {{.Config.StopTimeout}}", *beats])
    stopped = []
    for line in out.stdout.splitlines():
        container, running, grace = (line.strip().lstrip("/").split(" ") + ["", ""])[:3]
        if running == "true" and grace.isdigit() and int(grace) < BEAT_STOP_GRACE:
            run(["docker", "stop", "--time", str(BEAT_STOP_GRACE), container],
                what=f"stopping {container} (saving its schedule)")
            stopped.append(container)
            log(f"stopped {container} with {BEAT_STOP_GRACE}s to save its schedule before it is recreated")
    return stopped


# ---- picking up replaced secret files in place (ops/data/rotate.py): the container is never recreated --------------
def container_id(service: str) -> str:
    out = probe(["docker", "inspect", "--format", "{{.Id}}", name(service)])
    return out.stdout.strip() if out.returncode == 0 else ""


def _processes(container: str) -> list[tuple[str, str]]:
    """(pid, parent pid) of each of the container's processes (host pids, from `docker top`: nothing runs inside)."""
    out = run(["docker", "top", container, "-o", "pid,ppid"], capture=True, what=f"listing {container}'s processes")
    rows = (line.split() for line in out.stdout.splitlines()[1:])  # the first line is the header
    return [(row[0], row[1]) for row in rows if row[1:]]


def web_workers(service: str) -> tuple[str, list[str]]:
    """(gunicorn master's pid, its workers' pids) in a web container: `init: true` makes the engine's init PID 1's
    process, the entrypoint execs gunicorn as its only child, and gunicorn's workers are that master's children."""
    container = name(service)
    rows = _processes(container)
    pids = {pid for pid, _ in rows}
    parents = {ppid for _, ppid in rows}
    # The init's parent is the engine's shim, outside; so is a healthcheck's `docker exec`, which has no child.
    roots = [pid for pid, ppid in rows if ppid not in pids and pid in parents]
    masters = [pid for pid, ppid in rows if roots and ppid == roots[0]]
    if len(roots) != 1 or len(masters) != 1:
        raise OpsError(f"{container}: cannot tell gunicorn's master among its processes: "
                       f"check `docker top {container}`")
    return masters[0], sorted(pid for pid, ppid in rows if ppid == masters[0])


def _ready_workers(service: str) -> set[str]:
    """The names (pids) gunicorn's post_worker_init left in the web container: workers that loaded the application."""
    out = probe(["docker", "exec", name(service), "ls", "-1", naming.WEB_READY_DIR])
    return set(out.stdout.split()) if out.returncode == 0 else set()


def _signal_master(service: str, master: str, signum: int, what: str) -> None:
    """Signal gunicorn's master by its host pid (`docker top`'s): ops runs on the engine's host, as root."""
    try:
        os.kill(int(master), signum)
    except (ProcessLookupError, PermissionError) as exc:
        raise OpsError(f"{what}: cannot signal gunicorn's master (pid {master}: {exc.strerror}): see "
                       f"`./invoke logs --service {service}`") from None


def graceful_reload(service: str, timeout: float, log=print) -> None:
    """A rolling reload of gunicorn's workers with no moment without a ready one: for each old worker, TTIN starts a
    new one (it reads the secret files anew when it loads the application) and the roll waits until it has loaded
    it; only then does TTOU, once per old worker, let the master stop its oldest workers gracefully (they finish
    their requests). The master and its listening socket stay. (SIGHUP would stop the old workers at once, while
    the new ones still import the application: requests would wait in the socket's backlog meanwhile.) The signals
    go straight to the master's host pid (the engine's init, tini, forwards neither TTIN nor TTOU), one at a time,
    each one's effect awaited: the kernel merges a signal sent again before the first was handled."""
    from ops.core.run import wait_until

    master, old = web_workers(service)
    fix = f"see `./invoke logs --service {service}`"

    def workers() -> list[str]:
        now_master, now = web_workers(service)
        if now_master != master:
            raise OpsError(f"{name(service)}: gunicorn's master changed during the reload (it restarted): {fix}")
        return now

    for n in range(1, len(old) + 1):
        ready_before = _ready_workers(service)
        _signal_master(service, master, signal.SIGTTIN, f"adding a worker to {name(service)}")
        def added(n=n, before=ready_before) -> str | None:
            loaded = len(workers()) >= len(old) + n and _ready_workers(service) - before
            return None if loaded else "the new worker is loading the application"

        wait_until(added, timeout=timeout, what=f"{name(service)}'s new worker {n} of {len(old)}", log=log,
                   interval=0.25, fix=fix)
    for n in range(1, len(old) + 1):
        _signal_master(service, master, signal.SIGTTOU, f"retiring a worker of {name(service)}")

        def retired(n=n) -> str | None:
            return None if len(workers()) <= 2 * len(old) - n else "an old worker is finishing its requests"

        wait_until(retired, timeout=timeout, what=f"{name(service)}'s old worker {n} of {len(old)}", log=log,
                   interval=0.25, fix=fix)
    left = set(old) & set(workers())
    if left:  # gunicorn retires its oldest workers first: an old one left means something else changed them
        raise OpsError(f"{name(service)}: old gunicorn worker(s) {', '.join(sorted(left))} still run after the "
                       f"reload: {fix}")


def warm_stop(service: str) -> None:
    """Stop the container, keeping it (same container, same id, `start()` brings it back): the engine's SIGTERM is
    Celery's warm shutdown, which lets running tasks finish within the container's stop grace period."""
    out = probe(["docker", "inspect", "--format", "{{.Config.StopTimeout}}", name(service)])
    grace = out.stdout.strip() if out.returncode == 0 and out.stdout.strip().isdigit() else "30"
    run(["docker", "stop", "--time", grace, name(service)], what=f"stopping {name(service)}", timeout=int(grace) + 60)


def start(service: str) -> None:
    run(["docker", "start", name(service)], what=f"starting {name(service)}", timeout=120)
