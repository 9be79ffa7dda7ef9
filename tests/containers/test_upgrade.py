"""A deployment of the previous release upgrades in place with `./invoke up`, and nothing is lost.

The previous release (tests/support/previous_release.py: Redis 7.0, Debian 12, Python 3.11) is laid out from
git into a folder of its own and run with its own ./invoke, on a throwaway instance of its own. Its tenants
write what operators' tenants write: tasks through the web API with results in their databases, keys with
TTLs under a tenant's prefix (half in the AOF's base RDB, half in its incremental file), 100 tasks queued for
a tenant whose worker is down and one task its worker fetched and never acknowledged (the worker killed with
SIGKILL in the middle of it, acks_late), and beat's schedule. The previous release then takes a backup. The
folder's tracked files are replaced by today's work tree, as `git pull` does, and today's `./invoke up` runs
there. Then, counting: the server is Valkey 8.1 with every key, value and expiry; every queued task and the
unacknowledged one run exactly once; beat goes on from the previous release's schedule; the previous
release's backup and a new one both verify and restore.
"""
import collections
import datetime as dt
import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field

import pytest

from deployment import naming, ports
from deployment.instance import UIDS
from ops.config.paths import ARTIFACTS, INSTANCE
from ops.core.run import wait_until
from ops.deploy import instances
from tests.support import previous_release as pr

pytestmark = pytest.mark.slow

TENANTS = ("a", "b")
# Tenant b's worker is killed in the middle of a task: that message comes back after the visibility timeout.
# The shipped 3600 s would make the test wait an hour; 60 s (its time limit below it, as the app requires) is
# over long before the upgrade is done, so nothing waits for it.
VISIBILITY = 60
TIME_LIMIT = 30
SLOW_SECONDS = 10  # jobs.tasks.slow_echo's longest: the worker is killed while it runs
QUEUED = 100
DONE_BEFORE = 10  # tasks per tenant that ran before the upgrade, results in the tenant's database
HOUR_MS = 3_600_000
SCHEDULE = "/data/celerybeat-schedule"  # beat's --schedule (app/entrypoint.sh: $DATA_DIR/celerybeat-schedule)
SUCCEEDED = re.compile(r"Task jobs\.tasks\.\w+\[([0-9a-f-]{36})\] succeeded")
BEAT_SENT = "Scheduler: Sending due task heartbeat"
B_WORKER = naming.service_name("b", "worker")
HEARTBEAT, CLEANUP = "heartbeat", "cleanup-stale-results"  # app/tenantstack/celery_config.py beat_schedule()

# Read with the Python of the image it runs in: beat's shelve (dbm) file, written by celery's PersistentScheduler.
READ_SCHEDULE = """
import dbm, json, shelve, sys
path = sys.argv[1]
out = {"python": sys.version.split()[0], "dbm": dbm.whichdb(path), "entries": None}
try:
    with shelve.open(path, flag="r") as db:
        out["entries"] = {name: {"last_run_at": e.last_run_at.timestamp(), "total_run_count": e.total_run_count,
                                 "run_every": e.schedule.run_every.total_seconds()}
                          for name, e in db["entries"].items()}
except KeyError:
    pass  # a file that holds no schedule (yet)
print(json.dumps(out))
"""

ENQUEUE_SLOW = """
import os, sys, django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tenantstack.settings")
django.setup()
from jobs.tasks import slow_echo
print(slow_echo.apply_async(args=["unacknowledged", float(sys.argv[1])]).id)
"""


@pytest.fixture
def previous():
    """The previous release in <the suite instance's home>/previous-release, on instance <suite instance>-upg.

    Removed afterwards, also after a failure, by today's instance removal (containers, volumes, networks, image
    tags, files, port block), with the previous release's images and the folder."""
    missing = pr.missing_commit()
    if missing:
        pytest.fail(missing, pytrace=False)
    root = INSTANCE.home / "previous-release"
    shutil.rmtree(root, ignore_errors=True)  # a leftover of an earlier attempt of this same suite run
    dep = pr.Deployment(root, f"{INSTANCE.name}-upg", os.environ[ports.THROWAWAY_VAR])
    try:
        pr.lay_out(root)
        pr.link_venv(root)
        yield dep
    finally:
        _keep_artifacts(dep)
        try:
            instances.remove(dep.name, log=lambda m: print(f"test_upgrade: {m}"))
        finally:
            dep.remove_images(dep.old_images)
            shutil.rmtree(root, ignore_errors=True)


def _keep_artifacts(dep: pr.Deployment) -> None:
    folder = ARTIFACTS / "upgrade"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / "invoke.log").write_text("\n".join(dep.outputs))
    for service in ("redis", *(naming.service_name(t, r) for t in TENANTS for r in ("worker", "beat"))):
        (folder / f"{service}.log").write_text(dep.logs(service))


# ---- what the tenants wrote -----------------------------------------------------------------------------------
def _write_keys(c, tenant: str, part: str) -> None:
    """Strings, hashes, lists, sets and sorted sets, small (listpack/intset) and big (hashtable/quicklist/skiplist),
    most with a TTL of one to three hours, some without."""
    p = f"{naming.key_prefix(tenant)}upgrade:{part}:"
    pipe = c.pipeline(transaction=False)
    for i in range(40):
        pipe.set(f"{p}str:{i}", f"{tenant}-{part}-{i}", px=HOUR_MS + i * 61_007)
    for i in range(10):
        pipe.set(f"{p}plain:{i}", f"no ttl {i}")
    pipe.hset(f"{p}hash:small", mapping={f"f{i}": i for i in range(8)})
    pipe.hset(f"{p}hash:big", mapping={f"field-{i}": f"value-{i}" * 3 for i in range(1000)})
    pipe.rpush(f"{p}list:small", *[f"item-{i}" for i in range(10)])
    pipe.rpush(f"{p}list:big", *[f"item-{i}" * 4 for i in range(3000)])
    pipe.sadd(f"{p}set:ints", *range(100))
    pipe.sadd(f"{p}set:big", *[f"member-{i}" for i in range(1000)])
    pipe.zadd(f"{p}zset:small", {f"m{i}": i / 4 for i in range(10)})
    pipe.zadd(f"{p}zset:big", {f"member-{i}": i / 3 for i in range(1000)})
    for i, key in enumerate(("hash:small", "hash:big", "list:big", "set:ints", "zset:small", "zset:big")):
        pipe.pexpire(f"{p}{key}", 2 * HOUR_MS + i * 997)
    pipe.execute()


def _rewrite_aof(c) -> None:
    base = c.info("persistence")["aof_base_size"]
    c.bgrewriteaof()

    def rewriting() -> str | None:
        p = c.info("persistence")
        return "the rewrite" if p["aof_rewrite_in_progress"] or p["aof_rewrite_scheduled"] else None

    wait_until(rewriting, timeout=60, what="BGREWRITEAOF")
    p = c.info("persistence")
    assert p["aof_last_bgrewrite_status"] == "ok" and p["aof_base_size"] > base, p


def _transport(tenant: str, key: bytes) -> bool:
    """kombu's own keys (queue, unacked index, bindings): checked by running the tasks, not by comparing keys."""
    rest = key.decode()[len(naming.key_prefix(tenant)):]
    queue = naming.queue_name(tenant)
    return rest.startswith(("_kombu.", queue + "\x06\x16")) or rest in (queue, "unacked", "unacked_index",
                                                                        "unacked_mutex")


def _keys(c, tenant: str) -> dict[bytes, tuple]:
    """Every key of the tenant but kombu's: (type, value, absolute expiry in ms or -1, PTTL)."""
    out = {}
    for key in c.scan_iter(match=f"{naming.key_prefix(tenant)}*", count=1000):
        if _transport(tenant, key):
            continue
        kind = c.type(key).decode()
        read = {"string": c.get, "hash": c.hgetall, "list": lambda k: c.lrange(k, 0, -1), "set": c.smembers,
                "zset": lambda k: c.zrange(k, 0, -1, withscores=True)}[kind]
        out[key] = (kind, read(key), c.execute_command("PEXPIRETIME", key), c.pttl(key))
    return out


def _without_pttl(keys: dict) -> dict:
    return {k: v[:3] for k, v in keys.items()}


def _message_ids(raw_messages) -> list[str]:
    return [json.loads(m)["headers"]["id"] for m in raw_messages]


def _unacked_ids(c, tenant: str) -> set[str]:
    """Task ids in kombu's unacked hash: field = delivery tag, value = [message, exchange, routing key]."""
    return {json.loads(v)[0]["headers"]["id"] for v in c.hvals(naming.unacked_key(tenant))}


def _backup(dep: pr.Deployment) -> str:
    out = dep.invoke("backup").stdout
    match = re.search(r"verified in [\d.]+s: (\S+)", out)
    assert match, out
    return match.group(1).rstrip("/").rsplit("/", 1)[-1]


def _manifest(dep: pr.Deployment, stamp: str) -> dict:
    return json.loads((dep.model.backups / stamp / "manifest.json").read_text())


# ---- beat's schedule --------------------------------------------------------------------------------------------
def _schedule_in(dep: pr.Deployment, tenant: str) -> dict:
    """The schedule file as the running beat's own Python reads it (beat keeps it open; readers are fine)."""
    return json.loads(dep.exec_python(naming.service_name(tenant, "beat"), READ_SCHEDULE, SCHEDULE))


def _schedule_on_volume(dep: pr.Deployment, tenant: str, image: str) -> dict:
    """The schedule file on the tenant's volume (read-only), as `image`'s Python reads it."""
    volume = dep.model.volume(naming.data_volume(tenant))
    proc = dep.docker("run", "--rm", "--network", "none", "--user", f"{UIDS['app']}:{UIDS['app']}",
                      "-v", f"{volume}:/data:ro", "--entrypoint", "python", image, "-c", READ_SCHEDULE, SCHEDULE)
    lines = proc.stdout.strip().splitlines()  # not the exit code: Podman 4.3's `run --rm` always says 0
    assert lines and lines[-1].startswith("{"), f"reading {SCHEDULE} with {image} failed: {proc.stderr[-2000:]}"
    return json.loads(lines[-1])


def _heartbeats_sent(dep: pr.Deployment, tenant: str) -> int:
    return dep.logs(naming.service_name(tenant, "beat")).count(BEAT_SENT)


@dataclass
class Before:
    """What the previous release's tenants wrote, as it was just before the upgrade."""
    ran: dict[str, dict[str, dict]] = field(default_factory=dict)  # tenant -> task id -> its result before
    keys: dict[str, dict] = field(default_factory=dict)  # tenant -> _keys()
    slow: str = ""  # b's task its worker fetched and never acknowledged
    queued: list[str] = field(default_factory=list)  # b's tasks queued while its worker was down
    backup: str = ""  # the previous release's backup
    upgraded_at: float = 0.0


def _run_previous_release(dep: pr.Deployment) -> Before:
    """The previous release, as its operators run it; what its tenants write."""
    before = Before()
    dep.invoke("init")
    dep.set_tenant_settings("b", CELERY_VISIBILITY_TIMEOUT=str(VISIBILITY), CELERY_TASK_TIME_LIMIT=str(TIME_LIMIT))
    dep.invoke("up", "--tenant", "a", "--tenant", "b")
    dep.old_images = dep.image_ids("redis", "app")
    c = dep.client()
    server = c.info("server")
    assert server["redis_version"].startswith("7.0.") and "valkey_version" not in server, server

    ran = {t: [dep.post_echo(t, f"before-{t}-{i}") for i in range(DONE_BEFORE)] for t in TENANTS}
    before.ran = {t: dep.wait_for_tasks(t, ids) for t, ids in ran.items()}

    for t in TENANTS:
        _write_keys(c, t, "base")
    _rewrite_aof(c)  # what is written so far goes into the AOF's base file: an RDB written by Redis 7.0
    for t in TENANTS:
        _write_keys(c, t, "incr")  # ... and this only into its incremental file, as commands

    before.slow = dep.exec_python(naming.service_name("b", "web"), ENQUEUE_SLOW, str(SLOW_SECONDS)).strip()
    dep.wait_for_tasks("b", [before.slow], states=("STARTED",), timeout=60)
    dep.docker("kill", "--signal", "KILL", dep.container(B_WORKER))  # in the middle of it: never acknowledged
    dep.docker("stop", dep.container(B_WORKER))  # stays down (the engine restarts nothing a user stopped)
    assert not dep.running(B_WORKER)
    assert before.slow in _unacked_ids(c, "b")
    before.queued = [dep.post_echo("b", f"queued-{i}") for i in range(QUEUED)]
    assert set(before.queued) <= set(_message_ids(c.lrange(naming.queue_key("b"), 0, -1)))
    for t in TENANTS:  # beat has run: its schedule exists and has sent heartbeats
        wait_until(lambda t=t: None if _heartbeats_sent(dep, t) else "beat's first heartbeat", timeout=60,
                   what=f"tenant {t}'s beat")

    before.backup = _backup(dep)
    manifest = _manifest(dep, before.backup)
    assert manifest["redis_version"].startswith("7.0.") and set(manifest["tenants"]) == set(TENANTS), manifest
    before.keys = {t: _keys(c, t) for t in TENANTS}
    assert all(before.keys.values())
    c.close()
    return before


def _check_server_and_keys(dep: pr.Deployment, before: Before) -> None:
    """Valkey 8.1 now, with every key, value and expiry the previous release's Redis 7.0 held."""
    c = dep.client()
    server = c.info("server")
    assert server.get("server_name") == "valkey" and str(server.get("valkey_version", "")).startswith("8.1."), server
    loaded = dep.logs("redis")
    assert "Loading RDB produced by Redis version 7.0" in loaded, loaded[-3000:]
    for t in TENANTS:
        old, new = before.keys[t], _keys(c, t)
        lost = sorted(set(old) - set(new))
        assert (len(new), lost[:5]) == (len(old), []), f"tenant {t}: {len(old)} keys before, {len(new)} after"
        assert _without_pttl(new) == _without_pttl(old), f"tenant {t}: a value or an expiry changed"
        for key, (_, _, expires, pttl) in old.items():
            if expires == -1:
                assert new[key][3] == -1, key
            else:
                assert 0 < new[key][3] <= pttl, (key, pttl, new[key][3])


def _check_tasks_ran_once(dep: pr.Deployment, before: Before) -> None:
    """Every task queued for b, and the one its killed worker never acknowledged, ran exactly once."""
    c = dep.client()
    expected = [*before.queued, before.slow]
    done = dep.wait_for_tasks("b", expected, timeout=VISIBILITY * 3)
    assert done[before.slow]["result"]["value"] == "unacknowledged"
    assert sorted(done[i]["result"]["value"] for i in before.queued) == sorted(f"queued-{i}" for i in range(QUEUED))
    assert all(done[i]["result"]["tenant"] == "b" for i in expected)
    ran_at = {i: dt.datetime.fromisoformat(done[i]["date_done"]).timestamp() for i in expected}
    assert min(ran_at.values()) > before.upgraded_at, "a task of b ran before the upgrade"  # on today's worker

    def still_held() -> str | None:  # nothing of ours may stay queued or unacknowledged: no second run later
        held = (set(_message_ids(c.lrange(naming.queue_key("b"), 0, -1))) | _unacked_ids(c, "b")) & set(expected)
        return f"{len(held)} of them still queued or unacknowledged" if held else None

    wait_until(still_held, timeout=60, what="tenant b's tasks to be acknowledged")
    runs = collections.Counter(SUCCEEDED.findall(dep.logs(B_WORKER)))  # today's worker: a new container, new log
    assert {i: runs[i] for i in expected if runs[i] != 1} == {}, "task id -> times it ran (should be 1)"
    for t in TENANTS:  # what ran before the upgrade: the same rows
        assert {i: dep.task(t, i) for i in before.ran[t]} == {i: (200, body) for i, body in before.ran[t].items()}


def _check_beat_goes_on(dep: pr.Deployment, before: Before) -> None:
    """Python 3.13's beat reads the schedule Python 3.11's beat wrote, and goes on from it."""
    for t in TENANTS:
        beat = naming.service_name(t, "beat")
        # The file as the previous release's beat left it (it writes it when it stops), read by its own Python
        # 3.11; today's beat writes it only when it stops, so it is still that file.
        old = _schedule_on_volume(dep, t, dep.old_images["app"])
        assert old["python"].startswith("3.11.") and old["entries"], (
            f"tenant {t}: the previous release's beat left no schedule on its volume: {old}. Beat writes it only "
            "when it closes it (SIGTERM): was it killed outright by the upgrade's recreate?")
        assert old["entries"][CLEANUP]["last_run_at"] < before.upgraded_at, old
        new = _schedule_in(dep, t)
        assert new["python"].startswith("3.13.") and new["dbm"] == old["dbm"], new
        assert new["entries"] == old["entries"], f"tenant {t}: Python 3.13 reads another schedule: {new} != {old}"
        # Today's beat goes on from it. Stopped as Compose stops it (the container's own stop timeout), it
        # writes the file; what it wrote is the old schedule plus what it sent since.
        wait_until(lambda t=t: None if _heartbeats_sent(dep, t) else "a heartbeat", timeout=60,
                   what=f"today's beat of tenant {t}")
        dep.docker("stop", dep.container(beat))
        sent = _heartbeats_sent(dep, t)
        kept = _schedule_on_volume(dep, t, dep.model.image("app"))["entries"]
        assert kept and kept[CLEANUP] == old["entries"][CLEANUP], (
            f"tenant {t}: the hourly cleanup's schedule was reset: {kept} != {old['entries']}")
        next_cleanup = kept[CLEANUP]["last_run_at"] + kept[CLEANUP]["run_every"]
        assert next_cleanup < before.upgraded_at + kept[CLEANUP]["run_every"]  # the old run's, not a fresh start's
        counted = kept[HEARTBEAT]["total_run_count"] - old["entries"][HEARTBEAT]["total_run_count"]
        assert counted == sent, (
            f"tenant {t}: today's beat sent {sent} heartbeats after the previous release's "
            f"{old['entries'][HEARTBEAT]['total_run_count']}, its schedule file counts {counted} more: it was not "
            f"written when beat stopped (killed outright? stop timeout {dep.stop_timeout(beat)}s)")
    dep.invoke("up", "--tenant", "a", "--tenant", "b")  # the beats again


def _check_backups_restore(dep: pr.Deployment, before: Before) -> None:
    """The previous release's backup (Redis 7.0's files) verifies and restores into Valkey; so does Valkey's own."""
    want = {t: _without_pttl(before.keys[t]) for t in TENANTS}
    for which in ("previous", "today's"):
        backup = before.backup if which == "previous" else _backup(dep)
        assert set(_manifest(dep, backup)["tenants"]) == set(TENANTS)
        out = dep.invoke("restore", backup, "--yes").stdout
        assert "key counts match the manifest" in out, out
        c = dep.client()
        assert c.info("server")["server_name"] == "valkey"
        assert {t: _without_pttl(_keys(c, t)) for t in TENANTS} == want, f"restoring {which} backup {backup}"
        c.close()


def test_a_deployment_of_the_previous_release_upgrades_in_place_and_loses_nothing(previous):
    dep, t0, marks = previous, time.monotonic(), {}

    def mark(what: str) -> None:
        marks[what] = round(time.monotonic() - t0)

    before = _run_previous_release(dep)
    mark("previous release up, data written, backed up")
    pr.pull_work_tree(dep.root)  # today's tracked files, as `git pull` leaves them; instances/ stays
    pr.link_venv(dep.root)
    before.upgraded_at = time.time()
    dep.invoke("up", "--tenant", "a", "--tenant", "b")
    mark("today's up")
    _check_server_and_keys(dep, before)
    _check_tasks_ran_once(dep, before)
    mark("keys kept, tasks ran once")
    _check_beat_goes_on(dep, before)
    mark("beat schedules kept")
    _check_backups_restore(dep, before)
    mark("both backups restored")
    print(f"\ntest_upgrade: seconds since the start: {marks}")
