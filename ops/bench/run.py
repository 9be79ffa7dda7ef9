"""`invoke bench`: the deployment's speed on the real containers, each figure next to its baseline.

Sections (each measured in this one run):
  throughput   N no-op tasks per tenant through the broker until every result row is SUCCESS
  latency      queue latency p50/p99 at 100 tasks/s offered load
  hardening    the same burst against a plain (no TLS, no ACL) Redis, interleaved A B A B: hardened/plain
  two_tenants  a and b at once vs a alone
  backup       1M keys: raw BGSAVE + redis-check-rdb vs `backup` and `restore`
  flush        batched flush-results vs django-celery-results' delete_expired on identical copies
  warm_up      `./invoke up --tenant a` from stopped containers (images built) to all healthy
"""
import json
import shutil
import statistics
import threading
import time

from deployment import naming
from ops.config import tenants
from ops.config.envfile import read_env, rel
from ops.config.paths import BACKUPS, INSTANCE, ROOT
from ops.core import run as runner
from ops.core.errors import OpsError
from ops.core.run import probe, wait_until
from ops.data import backup as bk
from ops.data import bgsave as bg
from ops.deploy import compose, containers, redis_admin

RESULTS = INSTANCE.home / "bench" / "results.json"  # per instance: a test run never overwrites yours
PLAIN_REDIS = INSTANCE.container("bench-redis")
PLAIN_WORKER = INSTANCE.container("bench-worker")
BENCH_VOLUME = INSTANCE.volume("bench-data")
BENCH_NETWORK = INSTANCE.network("bench")
FILL_BATCH = 10_000


def _json_exec(container: str, *argv: str, timeout: float = 1800) -> dict:
    done = runner.run(["docker", "exec", container, *argv], timeout=timeout,
               what=f"bench step `{' '.join(argv[:4])}` in {container}")
    lines = done.stdout.strip().splitlines()
    if not lines:
        raise OpsError(f"bench step `{' '.join(argv[:4])}` in {container} printed nothing")
    return json.loads(lines[-1])


def _burst(container: str, n: int) -> dict:
    return _json_exec(container, "python", "-m", "jobs.bench", "burst", str(n))


def _worker(tenant: str) -> str:
    return containers.name(naming.service_name(tenant, "worker"))


def _up(*tenant_names: str) -> None:
    flags = [arg for t in tenant_names for arg in ("--tenant", t)]
    runner.run([str(ROOT / "invoke"), "up", *flags], what="bench: ./invoke up")


class PlainStack:
    """A plain Redis (no TLS, no ACL, same persistence) and a tenant-a worker pointed at it, same image."""

    def __enter__(self):
        self.__exit__()
        # A network of its own: the deployment's networks are one per tenant (compose.py), none is shared.
        runner.run(["docker", "network", "create", BENCH_NETWORK], what="bench: creating its network")
        runner.run(["docker", "run", "-d", "--name", PLAIN_REDIS, "--network", BENCH_NETWORK, "--entrypoint",
                    "redis-server", compose.image("redis"), "--port", "6379", "--protected-mode", "no",
                    "--dir", "/tmp",
                    "--appendonly", "yes", "--appendfsync", "everysec", "--maxmemory-policy", "noeviction"],
                   what="bench: starting the plain Redis")
        # Tenant a's settings as its own containers get them: no secret in the environment, secrets as files.
        secret_env = sum((["-e", f"{k}={v}"] for k, v in compose.secret_environment().items()), [])
        # ... and under the limits of its worker, so hardened/plain compares like with like.
        limits = compose.role_limits(read_env(tenants.env_path("a")), "worker", tenants.env_path("a"))
        limit_args = ["--memory", limits["mem_limit"], "--memory-swap", limits["memswap_limit"],
                      "--cpus", str(limits["cpus"]), "--pids-limit", str(limits["pids_limit"])]
        runner.run(["docker", "run", "-d", "--name", PLAIN_WORKER, "--network", BENCH_NETWORK, *limit_args,
                    "--env-file", str(compose.tenant_env_file("a")), *secret_env,
                    "-v", f"{compose.tenant_files_dir('a')}:{naming.APP_SECRETS_DIR}:ro",
                    "-e", f"BENCH_PLAIN_BROKER_URL=redis://{PLAIN_REDIS}:6379/0", "-e", "TLS_CA_FILE=/dev/null",
                    "-e", "TLS_CERT_FILE=/dev/null", "-e", "TLS_KEY_FILE=/dev/null",
                    "-v", f"{BENCH_VOLUME}:/data", "--read-only", "--tmpfs", "/tmp", compose.image("app"), "worker"],
                   what="bench: starting the plain worker")
        ping = ["docker", "exec", PLAIN_WORKER, "celery", "-A", "tenantstack", "inspect", "ping", "--timeout", "2"]
        wait_until(lambda: None if probe(ping).returncode == 0 else "its ping reply", timeout=120,
                   what="bench: the plain worker", fix=f"see `docker logs {PLAIN_WORKER}`", interval=1)
        return self

    def __exit__(self, *exc):
        probe(["docker", "rm", "-f", "-v", PLAIN_WORKER, PLAIN_REDIS])
        probe(["docker", "volume", "rm", "-f", BENCH_VOLUME])
        probe(["docker", "network", "rm", BENCH_NETWORK])


def throughput(n: int, log) -> dict:
    out = {t: _burst(_worker(t), n) for t in ("a", "b")}
    for t, r in out.items():
        log(f"bench: tenant {t}: {r['tasks_per_s']:.0f} tasks/s end to end, enqueue {r['enqueue_per_s']:.0f}/s")
    out["paced_100"] = _json_exec(_worker("a"), "python", "-m", "jobs.bench", "paced", "100", "10")
    log(f"bench: at 100 tasks/s offered: p50 {out['paced_100']['latency_p50_ms']:.1f} ms, "
        f"p99 {out['paced_100']['latency_p99_ms']:.1f} ms")
    return out


def hardening(n: int, rounds: int, log) -> dict:
    hardened, plain = [], []
    with PlainStack():
        for i in range(rounds):
            hardened.append(_burst(_worker("a"), n)["tasks_per_s"])
            plain.append(_burst(PLAIN_WORKER, n)["tasks_per_s"])
            log(f"bench: round {i + 1}: hardened {hardened[-1]:.0f} tasks/s, plain {plain[-1]:.0f} tasks/s")
    ratio = statistics.mean(hardened) / statistics.mean(plain)
    log(f"bench: hardened/plain = {ratio:.2f}")
    return {"hardened_tasks_per_s": hardened, "plain_tasks_per_s": plain, "ratio": ratio}


def two_tenants(n: int, log) -> dict:
    alone = _burst(_worker("a"), n)["tasks_per_s"]
    results = {}
    threads = [threading.Thread(target=lambda t=t: results.__setitem__(t, _burst(_worker(t), n))) for t in ("a", "b")]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    together = {t: r["tasks_per_s"] for t, r in results.items()}
    log(f"bench: a alone {alone:.0f} tasks/s; a and b together {together['a']:.0f} + {together['b']:.0f} tasks/s")
    return {"a_alone": alone, "together": together, "combined_vs_alone": sum(together.values()) / alone}


def _fill(client, keys: int, log) -> None:
    t0 = time.monotonic()
    for start in range(0, keys, FILL_BATCH):
        pipe = client.pipeline(transaction=False)
        for i in range(start, min(keys, start + FILL_BATCH)):
            pipe.set(f"bench:key:{i}", f"value-{i:010d}")
        pipe.execute()
    log(f"bench: filled {keys} keys in {time.monotonic() - t0:.1f}s")


def _clear(client) -> None:
    redis_admin.unlink_matching(client, "bench:key:*")


def backup_restore(keys: int, log) -> dict:
    client = redis_admin.operator(timeout=120)
    _fill(client, keys, log)
    made = []
    try:
        raw_save = bg.bgsave(client, log=lambda m: None)
        tmp = BACKUPS / ".bench-raw"
        tmp.mkdir(parents=True, exist_ok=True)
        containers.copy_out("redis", "/data", ["dump.rdb"], tmp)
        t0 = time.monotonic()
        bk.run_checker(["redis-check-rdb", str(tmp / "dump.rdb")], "bench")
        raw_check = time.monotonic() - t0
        shutil.rmtree(tmp, ignore_errors=True)
        t0 = time.monotonic()
        path = bk.create(keep=10_000, log=lambda m: None)
        backup_s = time.monotonic() - t0
        made.append(path)
        from ops.data.restore import restore

        t0 = time.monotonic()
        aside = restore(path.name, assume_yes=True, confirm=None, log=lambda m: None)
        restore_s = time.monotonic() - t0
        made.append(aside)
        raw = raw_save + raw_check
        log(f"bench: {keys} keys: raw BGSAVE {raw_save:.2f}s + check {raw_check:.2f}s; backup {backup_s:.2f}s "
            f"({backup_s / raw:.2f}x); restore {restore_s:.2f}s ({restore_s / raw:.2f}x)")
        return {"keys": keys, "raw_bgsave_s": raw_save, "raw_check_s": raw_check, "backup_s": backup_s,
                "restore_s": restore_s, "backup_vs_raw": backup_s / raw, "restore_vs_raw": restore_s / raw}
    finally:
        _clear(redis_admin.operator(timeout=120))
        for p in made:
            shutil.rmtree(p, ignore_errors=True)


def flush(rows: int, log) -> dict:
    r = _json_exec(_worker("a"), "python", "-m", "jobs.bench", "flush", str(rows), timeout=3600)
    b, e = r["batched"], r["delete_expired"]
    log(f"bench: flush {rows} rows: batched {b['rows_per_s']:.0f} rows/s, peak {b['peak_rss_mb']:.0f} MB; "
        f"delete_expired {e['rows_per_s']:.0f} rows/s, peak {e['peak_rss_mb']:.0f} MB")
    return r


def warm_up(log) -> dict:
    compose.run("stop", *[naming.service_name("a", r) for r in compose.ROLES], "redis",
                profiles=compose.all_profiles(), quiet=True, capture=True)
    t0 = time.monotonic()
    _up("a")
    seconds = time.monotonic() - t0
    log(f"bench: warm `./invoke up --tenant a`: {seconds:.1f}s to all healthy")
    return {"seconds": seconds}


TARGETS = [
    ("tasks/s end to end, tenant a", lambda r: r["throughput"]["a"]["tasks_per_s"], ">=", 500),
    ("enqueue/s, tenant a", lambda r: r["throughput"]["a"]["enqueue_per_s"], ">=", 2000),
    ("p99 queue latency at 100/s (ms)", lambda r: r["throughput"]["paced_100"]["latency_p99_ms"], "<", 50),
    ("hardened / plain", lambda r: r["hardening"]["ratio"], ">=", 0.90),
    ("two tenants combined / one alone", lambda r: r["two_tenants"]["combined_vs_alone"], ">=", 0),
    ("backup / (raw BGSAVE + check)", lambda r: r["backup"]["backup_vs_raw"], "<=", 1.5),
    ("restore / (raw BGSAVE + check)", lambda r: r["backup"]["restore_vs_raw"], "<=", 1.5),
    ("flush rows/s (batched)", lambda r: r["flush"]["batched"]["rows_per_s"], ">=", 50_000),
    ("flush rows/s (delete_expired)", lambda r: r["flush"]["delete_expired"]["rows_per_s"], ">=", 0),
    ("flush peak RSS MB (batched)", lambda r: r["flush"]["batched"]["peak_rss_mb"], "<", 150),
    ("flush peak RSS MB (delete_expired)", lambda r: r["flush"]["delete_expired"]["peak_rss_mb"], ">=", 0),
    ("warm up to healthy (s)", lambda r: r["warm_up"]["seconds"], "<=", 15),
]


def table(results: dict) -> str:
    lines = [f"{'measure':40} {'value':>12}  target"]
    for name, get, op, target in TARGETS:
        value = get(results)
        met = {">=": value >= target, "<": value < target, "<=": value <= target}[op]
        note = "" if target == 0 else f"{op} {target:g}  {'met' if met else 'MISSED'}"
        lines.append(f"{name:40} {value:12.2f}  {note}")
    return "\n".join(lines)


def run(n: int, rounds: int, keys: int, rows: int, log=print) -> dict:
    t0 = time.monotonic()
    _up("a", "b")
    results = {"config": {"n": n, "rounds": rounds, "keys": keys, "rows": rows}}
    results["throughput"] = throughput(n, log)
    results["hardening"] = hardening(n, rounds, log)
    results["two_tenants"] = two_tenants(n, log)
    results["flush"] = flush(rows, log)
    results["backup"] = backup_restore(keys, log)
    results["warm_up"] = warm_up(log)
    _up("a", "b")
    results["seconds"] = time.monotonic() - t0
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    log(table(results))
    log(f"bench: results in {rel(RESULTS)} ({results['seconds']:.0f}s)")
    return results
