"""`invoke bench`: what the deployment costs, as ratios measured side by side in one run, or cost per unit of work.

Absolute speeds do not survive a change of machine, so every figure with a target is a ratio of two things
measured in the same run, or a cost per unit (CPU-ms per task, cores per tenant, bytes per queued task).
Sections (`--only SECTION` runs one; each prints a line when it starts and when it ends):
  idle        cores the whole deployment uses at rest, per tenant, host-side helpers included
  throughput  A B C interleaved (stack.py): CPU-ms per task from the engine's cgroup accounting, tasks/s, enqueue/s
  latency     100 tasks/s offered, A and C interleaved: p50, p99, max, and what the p99 waits on
  memory      Redis memory per 10k queued tasks (A, nothing consuming)
  flush       flush-results' batched delete vs delete_expired, rows/s, and the worker's result-write p99 meanwhile
  backup      backup vs raw BGSAVE + valkey-check-rdb (from the server image, as backups are checked); whole
              restore's tenant-visible downtime vs the naive one
  monitoring  the instance's cores at rest with the monitoring profile running / without it, interleaved, and the
              publish-time header's cost per published task (the only thing monitoring adds to a task's path)
  tenant-restore  `keys` keys in the server, a tenth of them tenant b's: `backup --tenant b`, then `restore --tenant
              b` while echo tasks are posted to tenant a: restore time, a's failed requests, a's p99 during / before
"""
import contextlib
import json
import os
import shutil
import statistics
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path

import redis
from deployment import naming
from deployment.instance import UIDS
from ops.config import tenants
from ops.config.envfile import rel
from ops.config.paths import BACKUPS, INSTANCE
from ops.core.errors import OpsError
from ops.core.run import probe, wait_until
from ops.data import backup as bk
from ops.data import backup_format as fmt
from ops.data import bgsave as bg
from ops.data import restore as rs
from ops.data import tenant_backup
from ops.data import tenant_restore as one_restore
from ops.deploy import compose, connlimit, containers, redis_admin
from ops.engine import daemons, dockerd, provision
from ops.engine import healthcheck_runner as runner

from . import cpu, stack

RESULTS = INSTANCE.home / "bench" / "results.json"  # per instance: a test run never overwrites yours
SECTIONS = ("idle", "throughput", "latency", "memory", "flush", "backup", "monitoring", "tenant-restore")
WARM_UP_S = "3"  # seconds of paced load before the measured latency rounds
FULL = {"n": 5000, "rounds": 3, "keys": 1_000_000, "rows": 1_000_000, "idle_s": 60, "paced_s": 30, "queued": 10_000}
QUICK = {"n": 200, "rounds": 1, "keys": 10_000, "rows": 5_000, "idle_s": 5, "paced_s": 5, "queued": 1_000}
PACED_RATE = 100  # tasks/s offered in the latency section
FLUSH_LOAD_RATE = 50  # tasks/s the worker stores while a flush runs (its result-write latency is the measure)
FILL_BATCH = 10_000
# The engine's host-side processes, charged to the deployment at rest: what serves its containers outside
# them (the engine in use only: a host may run both, and the other one serves none of these containers).
PODMAN_HELPERS = {"healthcheck runner": daemons.STATE_DIR / "healthcheck-runner.pid",
                  "Podman API service": daemons.STATE_DIR / "podman-service.pid"}
DOCKER_HELPERS = {"dockerd": daemons.STATE_DIR / "dockerd.pid", "containerd": dockerd.CONTAINERD_PIDFILE}


def engine_helpers() -> dict[str, Path]:
    return DOCKER_HELPERS if provision.engine_in_use() == "docker" else PODMAN_HELPERS


def quiet(_message: str) -> None:
    """For ops functions whose own progress would drown the bench's lines."""


# ---- idle --------------------------------------------------------------------------------------------
def _deployment_containers() -> list[str]:
    out = probe(["docker", "ps", "--filter", f"label=com.docker.compose.project={INSTANCE.compose_project}",
                 "--format", "{{.Names}}"])
    return sorted(n for n in out.stdout.split() if n)


def _running_containers_on_host() -> int:
    out = probe(["docker", "ps", "--format", "{{.Names}}"])
    return len(out.stdout.split())


def idle(cfg: dict, log) -> dict:
    """Cores at rest per tenant: the instance's containers, plus its share of the host-side helpers.

    The engine's host-side processes (Podman: the healthcheck runner and the API service; Docker Engine:
    dockerd and its containerd) serve every instance on the host: this instance is charged the share of
    their CPU that its containers are of all running containers (what they would cost it alone on the
    host); their whole cost is recorded beside it.
    """
    names = _deployment_containers()
    tenant_count = len([n for n in tenants.known_names()
                        if INSTANCE.container(naming.service_name(n, "worker")) in names])
    if not tenant_count:
        raise OpsError("bench idle: no tenant worker is running: the deployment is not up")
    # At rest means after `up`'s poke: the runner lists containers every second for POKED seconds after it.
    settle = runner.POKED - (time.time() - runner.poked_at())
    if settle > 0:
        log(f"bench: waiting {settle:.0f}s for the healthcheck runner to settle after `up`")
        time.sleep(settle)
    meter = cpu.Meter(names)
    pids = {what: cpu.pid_from(p) for what, p in engine_helpers().items()}
    pids = {what: pid for what, pid in pids.items() if pid}
    on_host = max(len(names), _running_containers_on_host())
    before, helpers_before, t0 = meter.read(), {w: cpu.process_seconds(p) for w, p in pids.items()}, time.monotonic()
    time.sleep(cfg["idle_s"])
    after = meter.read()
    helpers_after = {w: cpu.process_seconds(p) for w, p in pids.items()}
    seconds = time.monotonic() - t0
    by_container = {n: ms / 1000 / seconds for n, ms in cpu.delta_ms(before, after).items()}
    helpers = {w: (helpers_after[w] - helpers_before[w]) / seconds for w in pids}
    share = len(names) / on_host
    containers_cores = sum(by_container.values())
    total = containers_cores + share * sum(helpers.values())
    log(f"bench: at rest over {seconds:.0f}s: containers {containers_cores:.3f} cores; host helpers "
        + ", ".join(f"{w} {c:.3f}" for w, c in helpers.items())
        + f" (whole host; this instance's share {share:.2f}); {total / tenant_count:.3f} cores per tenant")
    return {"seconds": seconds, "tenants": tenant_count, "cores_by_container": by_container,
            "cores_host_helpers_whole_host": helpers, "host_helper_share": share,
            "cores_containers": containers_cores, "cores_total": total, "cores_per_tenant": total / tenant_count,
            "cores_per_tenant_containers_only": containers_cores / tenant_count}


# ---- throughput --------------------------------------------------------------------------------------
def throughput(cfg: dict, log) -> dict:
    runs = {c: [] for c in stack.CONFIGS}
    with stack.TenantWorkerStopped(), stack.Stack(stack.CONFIGS) as s:
        meters = {c: s.meter(c) for c in stack.CONFIGS}
        for i in range(cfg["rounds"]):
            for c in stack.CONFIGS:  # interleaved A B C A B C: drift of the machine's load hits all three alike
                r = stack.measured_burst(c, cfg["n"], meters[c])
                runs[c].append(r)
                log(f"bench: round {i + 1} {c}: {r['tasks_per_s']:.0f} tasks/s, enqueue {r['enqueue_per_s']:.0f}/s, "
                    f"{r['cpu_ms_per_task']:.2f} CPU-ms/task")
    out = {}
    for c, done in runs.items():
        out[c] = {"runs": done, "tasks_per_s": statistics.mean(r["tasks_per_s"] for r in done),
                  "enqueue_per_s": statistics.mean(r["enqueue_per_s"] for r in done),
                  "cpu_ms_per_task": statistics.mean(r["cpu_ms_per_task"] for r in done),
                  "cpu_ms_per_task_raw": statistics.mean(r["cpu_ms_per_task_raw"] for r in done),
                  "cpu_ms_per_task_by_role": _by_role(c, done, cfg["n"])}
    # Each ratio is the median over rounds of that round's ratio: the three bursts of one round ran minutes
    # apart at most, while the machine's speed drifts between rounds (one run here saw B at 111 tasks/s in
    # round 1 and 207 in round 3). The spread is kept beside it.
    for name, key, top, bottom in (("cpu_A_over_C", "cpu_ms_per_task", "A", "C"),
                                   ("cpu_A_over_B", "cpu_ms_per_task", "A", "B"),
                                   ("tasks_A_over_B", "tasks_per_s", "A", "B"),
                                   ("tasks_A_over_C", "tasks_per_s", "A", "C")):
        per_round = [a[key] / b[key] for a, b in zip(runs[top], runs[bottom], strict=True)]
        out[name] = statistics.median(per_round)
        out[f"{name}_rounds"] = per_round
    log(f"bench: CPU per task A/C {out['cpu_A_over_C']:.2f}, A/B {out['cpu_A_over_B']:.2f}; "
        f"tasks/s A/B {out['tasks_A_over_B']:.2f}, A/C {out['tasks_A_over_C']:.2f}")
    return out


def _by_role(config: str, runs: list[dict], n: int) -> dict:
    roles = dict(zip(stack.involved(config), ("redis", "worker", "driver"), strict=True))
    return {role: statistics.mean(r["cpu_ms_net"][name] for r in runs) / n for name, role in roles.items()}


# ---- latency -----------------------------------------------------------------------------------------
def latency(cfg: dict, log) -> dict:
    runs = {"A": [], "C": []}
    with stack.TenantWorkerStopped(), stack.Stack(("A", "C")):
        for c in runs:  # a short unmeasured run first: cold pools and connections made the first round's tail
            stack.drive(c, "paced", str(PACED_RATE), WARM_UP_S)
        for i in range(max(1, cfg["rounds"] - 1)):
            for c, done in runs.items():  # interleaved A C A C
                r = stack.drive(c, "paced", str(PACED_RATE), str(cfg["paced_s"]))
                done.append(r)
                log(f"bench: round {i + 1} {c} at {PACED_RATE}/s: p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, "
                    f"max {r['max_ms']:.1f} ms; p99 waits on {r['p99_waits_on']}")
    out = {c: {"runs": rr, **{k: statistics.mean(r[k] for r in rr) for k in
                              ("p50_ms", "p99_ms", "max_ms", "tail_queue_ms", "tail_write_ms")},
               "p99_waits_on": rr[-1]["p99_waits_on"]} for c, rr in runs.items()}
    out["offered_per_s"] = PACED_RATE
    per_round = [a["p99_ms"] / c["p99_ms"] for a, c in zip(runs["A"], runs["C"], strict=True)]
    out["p99_A_over_C"], out["p99_A_over_C_rounds"] = statistics.median(per_round), per_round
    log(f"bench: p99 A/C {out['p99_A_over_C']:.2f}")
    return out


# ---- memory ------------------------------------------------------------------------------------------
def memory(cfg: dict, log) -> dict:
    client = redis_admin.operator(timeout=60)
    queue_key = naming.key_prefix(stack.TENANT) + naming.queue_name(stack.TENANT)
    n = cfg["queued"]
    with stack.TenantWorkerStopped(), stack.Stack(("A",), workers=False):
        length0, used0 = client.llen(queue_key), client.info("memory")["used_memory"]
        stack.drive("A", "enqueue", str(n))
        length1, used1 = client.llen(queue_key), client.info("memory")["used_memory"]
        client.unlink(queue_key)  # nothing consumes them; beat's heartbeats among them expire anyway
    if length1 - length0 < n:
        raise OpsError(f"bench memory: {length1 - length0} of {n} tasks reached {queue_key}: the measure is void")
    per_10k = (used1 - used0) * 10_000 / (length1 - length0)
    log(f"bench: Redis memory {per_10k / 2**20:.2f} MiB per 10k queued tasks ({(used1 - used0) / n:.0f} B each)")
    return {"queued": length1 - length0, "bytes": used1 - used0, "mib_per_10k": per_10k / 2**20,
            "bytes_per_task": (used1 - used0) / (length1 - length0)}


# ---- flush -------------------------------------------------------------------------------------------
def _write_p99(samples: list, start: float, end: float) -> tuple[float, int]:
    """p99 result-write latency (ms) of tasks started in [start, end]."""
    writes = sorted(w for started, _, w in samples if start <= started <= end)
    if not writes:
        return 0.0, 0
    return 1000 * writes[min(len(writes) - 1, int(0.99 * len(writes)))], len(writes)


def flush(cfg: dict, log) -> dict:
    rows = cfg["rows"]
    load_s = 6 + rows / 30_000  # long enough to cover either flush on this machine kind, with margin
    out = {"rows": rows, "load_per_s": FLUSH_LOAD_RATE}
    with stack.TenantWorkerStopped(), stack.Stack(("A",)):
        base = stack.drive("A", "paced", str(FLUSH_LOAD_RATE), str(min(load_s, 10)))
        out["write_p99_ms_without_flush"] = base["write_p99_ms"]
        log(f"bench: result-write p99 with no flush running: {base['write_p99_ms']:.1f} ms")
        for method in ("batched", "delete_expired"):
            stack.drive("A", "fill", str(rows))
            load = {}
            th = threading.Thread(target=lambda load=load: load.update(
                stack.drive("A", "paced", str(FLUSH_LOAD_RATE), str(load_s), "--raw")))
            th.start()
            time.sleep(2)  # the load is steady before the flush starts
            report = stack.drive("A", "flush", method)
            th.join()
            if not load:
                raise OpsError(f"bench flush: the load beside {method} failed (see above)")
            # During the flush and the second after it: writes held behind its lock complete just after.
            p99, count = _write_p99(load["samples"], report["started"], report["ended"] + 1.0)
            if report["deleted"] != rows:
                raise OpsError(f"bench flush: {method} deleted {report['deleted']} of {rows} stale rows")
            covered = bool(load["samples"]) and max(started for started, *_ in load["samples"]) >= report["ended"]
            out[method] = {**{k: report[k] for k in ("deleted", "seconds", "rows_per_s")},
                           "write_p99_ms_during": p99, "writes_during": count, "load_covered_flush": covered}
            log(f"bench: {method}: {rows} rows in {report['seconds']:.2f}s ({report['rows_per_s']:.0f} rows/s); "
                f"result-write p99 meanwhile {p99:.1f} ms over {count} tasks")
    out["rows_per_s_batched_over_delete_expired"] = out["batched"]["rows_per_s"] / out["delete_expired"]["rows_per_s"]
    base_p99 = out["write_p99_ms_without_flush"] or 1e-3
    out["write_p99_during_batched_over_without"] = out["batched"]["write_p99_ms_during"] / base_p99
    out["write_p99_during_delete_expired_over_without"] = out["delete_expired"]["write_p99_ms_during"] / base_p99
    return out


# ---- backup and restore ------------------------------------------------------------------------------
def _fill_keys(client, keys: int, log) -> None:
    t0 = time.monotonic()
    for start in range(0, keys, FILL_BATCH):
        pipe = client.pipeline(transaction=False)
        for i in range(start, min(keys, start + FILL_BATCH)):
            pipe.set(f"bench:key:{i}", f"value-{i:010d}")
        pipe.execute()
    log(f"bench: filled {keys} keys in {time.monotonic() - t0:.1f}s")


class Downtime:
    """Polls tenant a's /healthz (web, database and broker) from the host; sums the time it was not 200."""

    INTERVAL = 0.25  # each /healthz costs the web a database and a broker round trip: poll, do not load it

    def __init__(self):
        self.url = f"http://127.0.0.1:{tenants.web_port_of(stack.TENANT)}/healthz"
        self.samples, self.stop = [], threading.Event()

    def _ok(self) -> bool:
        try:
            with urllib.request.urlopen(self.url, timeout=2) as resp:  # noqa: S310 - the instance's own loopback URL
                return resp.status == HTTPStatus.OK
        except (urllib.error.URLError, OSError):
            return False

    def _poll(self) -> None:
        while not self.stop.is_set():
            self.samples.append((time.monotonic(), self._ok()))
            time.sleep(self.INTERVAL)

    def __enter__(self):
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()
        return self

    def settle(self, timeout: float = 300) -> None:
        """Wait until the tenant answers 200 again."""
        wait_until(lambda: None if self._ok() else "tenant a's /healthz to answer 200", timeout=timeout,
                   what="bench backup", interval=self.INTERVAL)

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()

    @property
    def seconds(self) -> float:
        s = self.samples
        return sum(s[i + 1][0] - s[i][0] for i in range(len(s) - 1) if not s[i][1])


def _naive_restore(source: Path) -> None:
    """The naive procedure: stop Redis, copy the backup's files into its volume, start Redis."""
    uid = UIDS["redis"]
    compose.run("stop", naming.REDIS_SERVICE, quiet=True, capture=True)
    try:
        # As root, like restore's put-back: backups are root's only (0700/0600); the files go to Redis' UID.
        containers.volume_job(compose.image("redis"), "0",
                              {containers.volume(naming.REDIS_DATA_VOLUME): "/data", str(source / "redis"): "/backup"},
                              "cd /data && rm -rf appendonlydir dump.rdb "
                              "&& cp -R /backup/appendonlydir /backup/dump.rdb . "
                              f"&& chown -R {uid}:{uid} appendonlydir dump.rdb")
    finally:  # never leave the instance's Redis stopped, whatever failed
        compose.run("start", naming.REDIS_SERVICE, quiet=True, capture=True)
    connlimit.apply(tenants.known_names(), log=lambda m: None)  # a new container start: a new network namespace


def _saves_settled(client) -> str | None:
    """None once no save runs and this second is past LASTSAVE's.

    The fill itself triggers an automatic save (save point 60 10000). bgsave.start() waits that one out but
    then takes LASTSAVE again without waiting for the next second, so a fast BGSAVE ending in the same second
    looks like no save and `wait` spins until its time-out (seen here: 10k keys, a 0.2 s save).
    """
    if client.info("persistence").get("rdb_bgsave_in_progress"):
        return "the automatic save the fill triggered"
    return None if int(time.time()) > int(client.lastsave().timestamp()) else "the second after LASTSAVE"


def backup(cfg: dict, log) -> dict:
    keys = cfg["keys"]
    client = redis_admin.operator(timeout=120)
    existing = set(BACKUPS.iterdir()) if BACKUPS.is_dir() else set()
    _fill_keys(client, keys, log)
    try:
        wait_until(lambda: _saves_settled(client), timeout=600, what="bench backup", interval=0.1)
        raw_save = bg.bgsave(client, log=quiet)
        tmp = BACKUPS / ".bench-raw"
        tmp.mkdir(parents=True, exist_ok=True)
        try:
            containers.copy_out(naming.REDIS_SERVICE, "/data", ["dump.rdb"], tmp)
            t0 = time.monotonic()
            # The same checker as a backup's, run the same way: the server image's, in a throwaway container.
            fmt.check_redis_files(tmp, "bench: the raw BGSAVE", rdb=fmt.RDB_NAME)
            raw_check = time.monotonic() - t0
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        t0 = time.monotonic()
        path = bk.create(keep=10_000, log=quiet)
        backup_s = time.monotonic() - t0
        raw = raw_save + raw_check
        log(f"bench: {keys} keys: raw BGSAVE {raw_save:.2f}s + check {raw_check:.2f}s; backup {backup_s:.2f}s "
            f"({backup_s / raw:.2f}x)")
        with Downtime() as whole:
            t0 = time.monotonic()
            rs.restore(path.name, assume_yes=True, confirm=None, log=quiet)
            restore_s = time.monotonic() - t0
            whole.settle()
        with Downtime() as naive:
            t0 = time.monotonic()
            _naive_restore(path)
            naive.settle()
            naive_s = time.monotonic() - t0
        if not whole.seconds or not naive.seconds:
            raise OpsError("bench backup: tenant a's /healthz never failed during a restore: the probe is broken")
        log(f"bench: restore {restore_s:.1f}s, tenant a down {whole.seconds:.1f}s; naive stop/copy/start "
            f"{naive_s:.1f}s, down {naive.seconds:.1f}s ({whole.seconds / naive.seconds:.2f}x)")
        return {"keys": keys, "raw_bgsave_s": raw_save, "raw_check_s": raw_check, "backup_s": backup_s,
                "backup_over_raw": backup_s / raw, "restore_s": restore_s, "restore_downtime_s": whole.seconds,
                "naive_restore_s": naive_s, "naive_downtime_s": naive.seconds,
                "downtime_restore_over_naive": whole.seconds / naive.seconds}
    finally:
        redis_admin.unlink_matching(redis_admin.operator(timeout=120), "bench:key:*")
        # The bench's backup and restore's pre-restore copy, also when a step failed: never an operator's.
        for made in (set(BACKUPS.iterdir()) if BACKUPS.is_dir() else set()) - existing:
            shutil.rmtree(made, ignore_errors=True)


# ---- one tenant's restore ----------------------------------------------------------------------------
class EchoLoad:
    """Echo tasks posted to tenant a's web every INTERVAL s on a thread: each request's latency, and the failed ones
    (an error, a time-out, anything but 202). p99_before: the same requests, one at a time, just before."""

    INTERVAL = 0.05

    def __init__(self):
        self.url = f"http://127.0.0.1:{tenants.web_port_of(stack.TENANT)}/api/tasks/echo"
        self.latencies, self.failed, self.stop = [], 0, threading.Event()
        self.p99_before = 0.0

    def _post(self) -> tuple[float, bool]:
        req = urllib.request.Request(self.url, data=b'{"value": "bench"}', method="POST",
                                     headers={"Content-Type": "application/json"})
        t0 = time.perf_counter()
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - the instance's own loopback URL
                ok = resp.status == HTTPStatus.ACCEPTED
        except (urllib.error.URLError, OSError):
            ok = False
        return (time.perf_counter() - t0) * 1000, ok

    def _run(self) -> None:
        while not self.stop.is_set():
            ms, ok = self._post()
            self.latencies.append(ms)
            self.failed += not ok
            self.stop.wait(self.INTERVAL)

    @staticmethod
    def p99(samples: list[float]) -> float:
        return statistics.quantiles(samples, n=100, method="inclusive")[98] if len(samples) > 1 else 0.0

    def __enter__(self):
        before = []
        for _ in range(100):
            ms, ok = self._post()
            if not ok:
                raise OpsError("bench tenant-restore: tenant a refused an echo task before the restore: is it healthy?")
            before.append(ms)
            time.sleep(self.INTERVAL)
        self.p99_before = self.p99(before)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def _fill_tenant(client, prefix: str, keys: int) -> None:
    """`keys` keys under prefix: strings, and every tenth a hash (DUMP/RESTORE move more than one type)."""
    for start in range(0, keys, FILL_BATCH):
        pipe = client.pipeline(transaction=False)
        for i in range(start, min(keys, start + FILL_BATCH)):
            if i % 10:
                pipe.set(f"{prefix}bench:{i}", f"value-{i:010d}")
            else:
                pipe.hset(f"{prefix}bench:{i}", mapping={"f": i, "g": "x" * 20})
        pipe.execute()


def tenant_restore(cfg: dict, log) -> dict:
    keys, name = cfg["keys"], "b"
    own = keys // 10
    client = redis_admin.operator(timeout=120)
    parent = tenant_backup.default_parent(name)
    existing = set(parent.iterdir()) if parent.is_dir() else set()
    _fill_keys(client, keys - own, log)
    _fill_tenant(client, naming.key_prefix(name), own)
    try:
        t0 = time.monotonic()
        path = tenant_backup.create(name, log=quiet)
        backup_s = time.monotonic() - t0
        with EchoLoad() as load:
            t0 = time.monotonic()
            one_restore.restore(str(path), name, assume_yes=True, confirm=None, log=quiet)
            restore_s = time.monotonic() - t0
        during = load.p99(load.latencies)
        ratio = during / load.p99_before if load.p99_before else float("inf")
        log(f"bench: {keys} keys, {own} of them tenant {name}'s: backup --tenant {backup_s:.1f}s, restore --tenant "
            f"{restore_s:.1f}s; tenant a: {len(load.latencies)} requests, {load.failed} failed, p99 {during:.1f} ms "
            f"during vs {load.p99_before:.1f} ms before (x{ratio:.2f})")
        return {"keys": keys, "tenant_keys": own, "backup_s": backup_s, "restore_s": restore_s,
                "requests_a": len(load.latencies), "failed_requests_a": load.failed,
                "p99_before_ms_a": load.p99_before, "p99_during_ms_a": during, "p99_ratio_a": ratio}
    finally:
        admin = redis_admin.operator(timeout=120)
        redis_admin.unlink_matching(admin, "bench:key:*")
        redis_admin.unlink_matching(admin, f"{naming.key_prefix(name)}bench:*")
        for made in (set(parent.iterdir()) if parent.is_dir() else set()) - existing:
            shutil.rmtree(made, ignore_errors=True)
        _compact_aof(admin, log)


def _compact_aof(client, log) -> None:
    """Rewrite the AOF once the dataset is gone: its writes and deletes would otherwise stay in the AOF (until the
    server's own rewrite threshold), and every later backup of the deployment would copy them."""
    with contextlib.suppress(redis.ResponseError):  # one is already running or scheduled: waiting for it is enough
        client.bgrewriteaof()

    def rewriting() -> str | None:
        info = client.info("persistence")
        busy = info.get("aof_rewrite_in_progress") or info.get("aof_rewrite_scheduled")
        return "the AOF rewrite" if busy else None

    wait_until(rewriting, timeout=600, what="bench: compacting the AOF after the dataset", log=log)


# ---- monitoring --------------------------------------------------------------------------------------
SETTLE_S = 3  # after a start or stop: the engine's own work (and the first scrapes) out of the window
HEADER_CALLS = 100_000


def _header_cost_us() -> float:
    """Microseconds per call of the before_task_publish handler that stamps the publish time
    (app/tenantstack/published.py)."""
    # The glue's module as a package of the checkout (app/ is a namespace package beside ops/), no path games.
    from app.tenantstack.published import stamp_publish_time

    t0 = time.perf_counter()
    for _ in range(HEADER_CALLS):
        stamp_publish_time(headers={})
    return (time.perf_counter() - t0) / HEADER_CALLS * 1e6


def monitoring(cfg: dict, log) -> dict:
    """Cores at rest with the monitoring profile / without, same run, interleaved (without, with; per round).

    The profile is started for the tenants whose workers run (built and rendered as `up --monitoring` does)
    and left as it was found: running if it ran, removed if not.
    """
    from ops.deploy import health
    from ops.monitor import profile

    names = [n for n in tenants.known_names() if containers.is_running(naming.service_name(n, "worker"))]
    services = profile.services(names)
    profiles = [compose.MONITORING_PROFILE]
    was_running = all(containers.is_running(s) for s in services)
    compose.run("build", naming.PROMETHEUS_SERVICE, profiles=profiles, quiet=True, capture=True)
    profile.prepare(names)

    def start():
        compose.run("up", "--detach", "--remove-orphans=false", *services, profiles=profiles, quiet=True,
                    capture=True)
        health.wait(services, 300, log=quiet)
        time.sleep(SETTLE_S)

    rounds = []
    try:
        for i in range(cfg["rounds"]):
            compose.run("stop", *services, profiles=profiles, quiet=True, capture=True)
            time.sleep(SETTLE_S)
            without = idle(cfg, quiet)
            start()
            with_ = idle(cfg, quiet)
            rounds.append({"without": without, "with": with_})
            log(f"bench: round {i + 1}: at rest {without['cores_total']:.3f} cores without monitoring, "
                f"{with_['cores_total']:.3f} with")
    finally:
        if was_running:
            start()
        else:
            compose.run("rm", "--stop", "--force", *services, profiles=profiles, quiet=True, capture=True)
    without = statistics.mean(r["without"]["cores_total"] for r in rounds)
    with_ = statistics.mean(r["with"]["cores_total"] for r in rounds)
    # The profile's own containers, measured directly (the totals also move with the helpers' share, which
    # grows with the instance's container count, and with whatever else the host runs meanwhile).
    own_names = {INSTANCE.container(s) for s in services}
    own = statistics.mean(sum(c for n, c in r["with"]["cores_by_container"].items() if n in own_names) for r in rounds)
    helpers = statistics.mean(sum(r["with"]["cores_host_helpers_whole_host"].values())
                              - sum(r["without"]["cores_host_helpers_whole_host"].values()) for r in rounds)
    header_us = _header_cost_us()
    log(f"bench: monitoring at rest: {with_ - without:.3f} cores with the helpers' share ({with_ / without:.2f}x); "
        f"its own containers {own:.4f} cores; host helpers {helpers:+.3f} cores; publish-time header "
        f"{header_us:.2f} us per published task")
    return {"rounds": rounds, "tenants": len(names), "cores_without": without, "cores_with": with_,
            "cores_monitoring": with_ - without, "idle_with_over_without": with_ / without,
            "cores_monitoring_containers": own, "cores_host_helpers_delta": helpers,
            "header_us_per_publish": header_us}


# ---- targets, machine, report ------------------------------------------------------------------------
TARGETS = [  # name, (section, key), op, target, stretch
    ("cpu_per_task_A_over_C", ("throughput", "cpu_A_over_C"), "<=", 1.3, 1.0),
    ("throughput_A_over_B", ("throughput", "tasks_A_over_B"), ">=", 0.95, None),
    ("idle_cores_per_tenant", ("idle", "cores_per_tenant"), "<=", 0.02, None),
    ("p99_latency_A_over_C", ("latency", "p99_A_over_C"), "<=", 1.5, None),
    ("backup_over_raw", ("backup", "backup_over_raw"), "<=", 1.5, None),
    ("restore_downtime_over_naive", ("backup", "downtime_restore_over_naive"), "<=", 2.0, None),
    ("flush_over_delete_expired_rows_per_s", ("flush", "rows_per_s_batched_over_delete_expired"), ">=", 1.0, None),
    ("flush_write_p99_over_without", ("flush", "write_p99_during_batched_over_without"), "<=", 2.0, None),
    # Prometheus' 6+ scrapes every 15 s, the exporters and their healthchecks: at most a quarter more at rest.
    ("monitoring_idle_with_over_without", ("monitoring", "idle_with_over_without"), "<=", 1.25, None),
    ("tenant_restore_failed_requests_other", ("tenant-restore", "failed_requests_a"), "<=", 0, None),
]


def _met(value: float, op: str, target: float) -> bool:
    return value <= target if op == "<=" else value >= target


def targets(results: dict) -> dict:
    out = {}
    for name, (section, key), op, target, stretch in TARGETS:
        if key not in results.get(section, {}):
            continue  # that section was not run (--only)
        value = results[section][key]
        entry = {"value": value, "target": target, "op": op, "met": _met(value, op, target)}
        if stretch is not None:
            entry.update(stretch=stretch, stretch_met=_met(value, op, stretch))
        out[name] = entry
    return out


def machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "unknown")
    engine = probe(["docker", "version", "--format", "{{range .Server.Components}}{{.Name}} {{.Version}};{{end}}"])
    name = (engine.stdout.strip().split(";") or ["unknown"])[0] or "unknown"
    return {"nproc": os.cpu_count(), "cpu_model": model, "engine": name}


def table(results: dict) -> str:
    lines = [f"{'target':40} {'value':>9}  {'goal':>8}  met"]
    for name, t in results.get("targets", {}).items():
        goal = f"{t['op']} {t['target']:g}"
        met = "met" if t["met"] else "MISSED"
        if "stretch" in t:
            met += f" (stretch {t['stretch']:g}: {'met' if t['stretch_met'] else 'missed'})"
        lines.append(f"{name:40} {t['value']:9.3f}  {goal:>8}  {met}")
    return "\n".join(lines)


def _save(results: dict, t_all: float) -> None:
    results["targets"] = targets(results)
    results["seconds"] = time.monotonic() - t_all
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


def run(cfg: dict, only: str | None, log=print) -> dict:
    """Run every section (or `only` one) with the sizes in cfg; merge into RESULTS; returns the results."""
    t_all = time.monotonic()
    wanted = [only] if only else list(SECTIONS)
    results = json.loads(RESULTS.read_text()) if only and RESULTS.exists() else {}
    results.update(config=cfg, machine=machine(), date=datetime.now(UTC).strftime("%Y-%m-%d"))
    sections = {"idle": idle, "throughput": throughput, "latency": latency, "memory": memory, "flush": flush,
                "backup": backup, "monitoring": monitoring, "tenant-restore": tenant_restore}
    needs_image = set(wanted) & {"throughput", "latency", "memory", "flush"}
    try:
        if needs_image:
            stack.build(log)
        for name in wanted:
            log(f"bench: [{name}] started")
            t0 = time.monotonic()
            results[name] = sections[name](cfg, log)
            results[name]["elapsed_s"] = time.monotonic() - t0
            log(f"bench: [{name}] done in {results[name]['elapsed_s']:.1f}s")
            _save(results, t_all)  # a later section's failure keeps what was measured
    finally:
        stack.clean()
        if needs_image:
            stack.remove_image()
    _save(results, t_all)
    log(table(results))
    log(f"bench: results in {rel(RESULTS)} ({results['seconds']:.0f}s)")
    return results
