"""The bench's own containers: its image (FROM the instance's app image), a plain Redis, workers and drivers.

Configuration A, B and C (tenantbench/worker.py) each get a worker and a driver container from the bench
image, with tenant a's env file and client certificate, the shipped service's hardening (read-only root,
no capabilities, no-new-privileges, init) and a scratch data volume of their own (a fresh SQLite results
database): only the Celery settings differ. B and C talk to one plain Redis (the server image's own
valkey-server: no TLS, no ACL, the same persistence settings) on tenant a's network; every container gets
tenant a's worker limits and its secrets as files. Every name carries the instance's name, and everything
is removed on leaving, also after a failure.
"""
import os
import time

from deployment import naming
from deployment.instance import BENCH_COMPONENT
from ops.config import tenants
from ops.config.envfile import read_env
from ops.config.paths import INSTANCE, ROOT
from ops.core.errors import OpsError
from ops.core.run import probe, run, stream, wait_until
from ops.deploy import compose, containers, health
from ops.engine.provision import COMPOSE_ENV

from . import cpu

CONFIGS = ("A", "B", "C")
TENANT = "a"  # the bench runs as tenant a: its env file, certificate, queue and ACL user
BENCH_DIR = ROOT / "bench"
IMAGE = INSTANCE.image(BENCH_COMPONENT)
PLAIN_REDIS = INSTANCE.container("bench-redis")
REDIS = INSTANCE.container(naming.REDIS_SERVICE)
PLAIN_BROKER = f"redis://{PLAIN_REDIS}:6379/0"
# Tenant a's own network: the hardened Redis is there as `redis`, and the plain one joins it.
NETWORK = INSTANCE.network(naming.tenant_network(TENANT))
HARDENED = ["--read-only", "--tmpfs", "/tmp:size=64m,mode=1777", "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges:true", "--init"]


def worker(config: str) -> str:
    return INSTANCE.container(f"bench-worker-{config.lower()}")


def driver(config: str) -> str:
    return INSTANCE.container(f"bench-driver-{config.lower()}")


def volume(config: str) -> str:
    return INSTANCE.volume(f"bench-data-{config.lower()}")


def redis_of(config: str) -> str:
    return REDIS if config == "A" else PLAIN_REDIS


def involved(config: str) -> list[str]:
    """The containers whose CPU one configuration's work costs: its Redis, worker and driver."""
    return [redis_of(config), worker(config), driver(config)]


def build(log) -> None:
    """The bench image on top of tenant a's current image (the example project; built by `up` just before)."""
    t0 = time.monotonic()
    shipped = INSTANCE.tenant_image(TENANT)
    run(["docker", "build", "--build-arg", f"APP_IMAGE={shipped}", "-t", IMAGE,
         "-f", str(BENCH_DIR / "Dockerfile"), str(BENCH_DIR)], env={**os.environ, **COMPOSE_ENV},
        what="bench: building the bench image", timeout=900)
    log(f"bench: image {IMAGE} built FROM {shipped} in {time.monotonic() - t0:.1f}s")


def remove_image() -> None:
    probe(["docker", "rmi", IMAGE])


def _everything() -> list[str]:
    return [PLAIN_REDIS] + [n for c in CONFIGS for n in (worker(c), driver(c))]


def clean() -> None:
    """Remove every bench container and volume of this instance (leftovers of a killed run too)."""
    probe(["docker", "rm", "-f", "-v", *_everything()])
    probe(["docker", "volume", "rm", "-f", *[volume(c) for c in CONFIGS]])


# The instance's label on every bench container: a bench killed outright leaves them, and `instance-remove` (or the
# next test run's sweep) finds them by it, as it finds volume jobs.
OWNED = ["--label", f"{containers.JOB_INSTANCE_LABEL}={INSTANCE.name}"]


def _tenant_args(config: str) -> list[str]:
    """Tenant a's settings as its own containers get them: its network, no secret in the environment (secrets
    as read-only files), its client certificate, and its worker's limits, so A, B and C compare like with like."""
    tls = INSTANCE.tls
    cert = naming.redis_user(TENANT)
    secret_env = [arg for k, v in compose.secret_environment().items() for arg in ("-e", f"{k}={v}")]
    limits = compose.role_limits(read_env(tenants.env_path(TENANT)), "worker", tenants.env_path(TENANT))
    return [*OWNED, "--network", NETWORK, "--env-file", str(compose.tenant_env_file(TENANT)), *secret_env,
            "--memory", limits["mem_limit"], "--memory-swap", limits["memswap_limit"],
            "--cpus", str(limits["cpus"]), "--pids-limit", str(limits["pids_limit"]),
            "-e", f"TENANTSTACK_ENV_FILE=envs/{naming.env_file_name(TENANT)}", "-e", f"BENCH_CONFIG={config}",
            "-e", f"BENCH_PLAIN_BROKER={PLAIN_BROKER}", "-v", f"{volume(config)}:/data",
            "-v", f"{compose.tenant_files_dir(TENANT)}:{naming.APP_SECRETS_DIR}:ro",
            "-v", f"{tls / 'ca.crt'}:/run/secrets/tls/ca.crt:ro",
            "-v", f"{tls / (cert + '.crt')}:/run/secrets/tls/client.crt:ro",
            "-v", f"{tls / (cert + '.key')}:/run/secrets/tls/client.key:ro", *HARDENED]


def _ready(name: str) -> str | None:
    state = probe(["docker", "inspect", "--format", "{{.State.Running}}", name]).stdout.strip()
    if state != "true":
        raise OpsError(f"bench: {name} stopped while starting: see `docker logs {name}`")
    out = probe(["docker", "logs", name])
    return None if " ready." in out.stdout + out.stderr else "its `ready.` log line"


class Stack:
    """Workers (optional) and drivers of the given configurations, with the plain Redis if B or C is among them."""

    def __init__(self, configs, workers: bool = True):
        self.configs, self.workers = list(configs), workers

    def __enter__(self):
        clean()
        try:
            if set(self.configs) & {"B", "C"}:
                # The server image's own valkey-server, configured on the command line instead of redis.conf.
                run(["docker", "run", "-d", "--name", PLAIN_REDIS, *OWNED, "--network", NETWORK,
                     "--entrypoint", "valkey-server", compose.image("redis"), "--port", "6379",
                     "--protected-mode", "no", "--dir", "/tmp", "--appendonly", "yes", "--appendfsync", "everysec",
                     "--maxmemory-policy", "noeviction"], what="bench: starting the plain Redis")
                ping = ["docker", "exec", PLAIN_REDIS, "valkey-cli", "ping"]
                wait_until(lambda: None if "PONG" in probe(ping).stdout else "PONG", timeout=60,
                           what="bench: the plain Redis", fix=f"see `docker logs {PLAIN_REDIS}`")
            for c in self.configs:
                if self.workers:
                    run(["docker", "run", "-d", "--name", worker(c), *_tenant_args(c), IMAGE, "worker"],
                        what=f"bench: starting worker {c}")
            for c in self.configs:
                if self.workers:  # the worker migrates the scratch database the driver polls
                    wait_until(lambda c=c: _ready(worker(c)), timeout=180, what=f"bench: worker {c}",
                               fix=f"see `docker logs {worker(c)}`", interval=1)
                run(["docker", "run", "-d", "--name", driver(c), *_tenant_args(c), IMAGE, "driver"],
                    what=f"bench: starting driver {c}")
        except BaseException:
            clean()
            raise
        return self

    def __exit__(self, *exc):
        clean()

    def meter(self, config: str) -> cpu.Meter:
        names = involved(config) if self.workers else [redis_of(config), driver(config)]
        return cpu.Meter(names)


def drive(config: str, *argv: str, timeout: float = 1800) -> dict:
    """Run a driver command in configuration `config`'s driver container; its last line, parsed."""
    import json

    done = run(["docker", "exec", driver(config), "python", "-m", "tenantbench.drive", *argv], timeout=timeout,
               what=f"bench: `drive {' '.join(argv)}` ({config})")
    lines = done.stdout.strip().splitlines()
    if not lines:
        raise OpsError(f"bench: `drive {' '.join(argv)}` ({config}) printed nothing")
    return json.loads(lines[-1])


class _Marks:
    """A file-like sink for stream(): calls on_mark(line) for the driver's `ready`/`done` lines as they arrive."""

    def __init__(self, on_mark):
        self.on_mark, self.pending, self.lines = on_mark, b"", []

    def write(self, block: bytes) -> None:
        self.pending += block
        while b"\n" in self.pending:
            line, self.pending = self.pending.split(b"\n", 1)
            text = line.decode(errors="replace").strip()
            if text in ("ready", "done"):
                self.on_mark(text)
            self.lines.append(text)


QUIET_S = 3.0  # the background rate of each container, measured just before each burst


def measured_burst(config: str, n: int, meter: cpu.Meter) -> dict:
    """A burst whose CPU is read at the driver's `ready` and `done` marks, so start-up is not counted.

    The involved containers also do background work meanwhile (A's Redis serves the rest of the deployment:
    tenant b, both beats, the webs' health checks), which on a slow run adds up to several ms per task. So
    each container's rate during QUIET_S seconds of no load just before is subtracted: `cpu_ms_per_task` is
    the marginal cost of the tasks; `cpu_ms` (raw) and `cpu_ms_background` are kept beside it.
    """
    import json

    q0, t0 = meter.read(), time.monotonic()
    time.sleep(QUIET_S)
    quiet = {k: v / (time.monotonic() - t0) for k, v in cpu.delta_ms(q0, meter.read()).items()}  # ms per s
    marks = {}
    sink = _Marks(lambda mark: marks.__setitem__(mark, (meter.read(), time.monotonic())))
    stream(["docker", "exec", driver(config), "python", "-m", "tenantbench.drive", "burst", str(n)], sink,
           what=f"bench: burst of {n} ({config})", chunk=1)
    if set(marks) != {"ready", "done"} or not sink.lines:
        raise OpsError(f"bench: burst ({config}) ended without its ready/done marks: {sink.lines[-1:]}")
    result = json.loads(sink.lines[-1])
    (before, t_ready), (after, t_done) = marks["ready"], marks["done"]
    raw = cpu.delta_ms(before, after)
    background = {k: rate * (t_done - t_ready) for k, rate in quiet.items()}
    result["cpu_ms"] = raw
    result["cpu_ms_background"] = background
    result["cpu_ms_net"] = {k: max(0.0, raw[k] - background[k]) for k in raw}
    result["cpu_ms_per_task"] = sum(result["cpu_ms_net"].values()) / n
    result["cpu_ms_per_task_raw"] = sum(raw.values()) / n
    return result


class TenantWorkerStopped:
    """Tenant a's shipped worker is stopped meanwhile: the bench's worker A consumes its queue instead."""

    service = naming.service_name(TENANT, "worker")

    def __enter__(self):
        compose.run("stop", self.service, profiles=[naming.compose_profile(TENANT)], quiet=True, capture=True)
        return self

    def __exit__(self, *exc):
        compose.run("up", "--detach", self.service, profiles=[naming.compose_profile(TENANT)], quiet=True,
                    capture=True)
        health.wait([self.service], 300, log=lambda m: None)
