"""Faults an operator meets: backups and restores killed at each step, a full disk, Redis dying mid-backup,
a rebooted host, backups others could have changed.

Steps are reached with the test-only TENANTSTACK_FAULT_AT=<step> (ops/data/journal.py): the task
SIGKILLs itself there, or with TENANTSTACK_FAULT_ACTION=stop it SIGSTOPs itself so the test can act
(fill the disk, kill Redis) and then SIGCONT it. Every test checks what an operator would: the live
settings are back, no key or task is lost, the next backup and restore succeed, and what they were
told fits in one clear line.
"""
import os
import re
import signal
import subprocess
import time

import pytest

from deployment import naming
from ops.config.paths import BACKUPS, INSTANCE, STATE
from ops.core.run import wait_until
from ops.data import journal as jn
from ops.deploy import compose, containers, health, redis_admin
from ops.engine import daemons, dockerd, provision
from tests.support import deployment as d
from tests.support import faults

pytestmark = pytest.mark.usefixtures("tenants_up")
SETTING = "auto-aof-rewrite-percentage"
SERVICES = ["redis"] + [naming.service_name(t, r) for t in ("a", "b") for r in naming.ROLES]


# ---- helpers -----------------------------------------------------------------------------------
def _setting() -> str:
    return redis_admin.config_get(d.client(), SETTING)


def _dataset(tag: str) -> dict:
    """Persistent keys of both tenants plus finished tasks; waits until the AOF (everysec) holds them."""
    c = d.client()
    keys = {f"tenant-{t}:fault:{tag}:{i}".encode(): f"{t}-{i}".encode() for t in ("a", "b") for i in range(20)}
    c.mset(keys)
    tasks = {t: [d.post_echo(t, f"{tag}-{t}-{i}") for i in range(3)] for t in ("a", "b")}
    results = {t: d.wait_for_results(t, ids) for t, ids in tasks.items()}
    time.sleep(1.5)  # appendfsync everysec
    return {"keys": keys, "tasks": results}


def _assert_intact(data: dict) -> None:
    c = d.client(socket_timeout=5)  # a write still paused would time out here
    c.set("tenant-a:fault:probe", "1")
    assert c.mget(list(data["keys"])) == list(data["keys"].values())
    for t, results in data["tasks"].items():
        for task_id, body in results.items():
            assert d.task_status(t, task_id) == (200, body)


def _backup() -> str:
    # Keep them all: the module's restore_source must outlive the backups later tests take (retention has
    # its own test in test_backup_restore.py; the default --keep 7 pruned it in a full run).
    out = d.invoke("backup", "--keep", "1000").stdout
    match = re.search(r"verified in [\d.]+s: \S+/(\S+)", out)
    assert match, out
    return match.group(1)


def _next_backup_and_restore_succeed(data: dict) -> None:
    name = _backup()
    out = d.invoke("restore", name, "--yes").stdout
    assert "key counts match the manifest" in out
    _assert_intact(data)
    assert not faults.partials() and not jn.JOURNAL.exists()


def _all_healthy() -> None:
    wait_until(lambda: ", ".join(f"{s} {st}" for s, st in health.states(SERVICES).items() if st != "healthy") or None,
               timeout=300, what="the test instance")


@pytest.fixture(autouse=True)
def _setting_back():
    original = _setting()
    yield original
    assert _setting() == original


# ---- backup killed at each step ----------------------------------------------------------------
@pytest.mark.parametrize("step", ["paused-rewrites", "bgsave", "copy", "verify"])
def test_backup_killed_at_a_step_is_undone_by_the_next_task(step, tmp_path, _setting_back):
    data = _dataset(f"bk-{step}")
    faults.killed_at(["backup"], step, tmp_path)
    assert jn.JOURNAL.exists() and faults.partials()
    if step != "verify":  # from verification on, the backup had put the setting back itself
        assert _setting() == "0"

    out = d.invoke("ps").stdout  # any task: its start undoes what the killed backup left
    told = [line for line in out.splitlines() if line.startswith("recover: ")]
    assert told and any("removed the unfinished folder" in line for line in told), out
    if step != "verify":
        assert f"recover: set {SETTING} back to {_setting_back} (changed by the backup)" in told
    if step in ("bgsave", "copy"):
        assert "recover: client writes unpaused (paused by the backup)" in told
    assert _setting() == _setting_back and not faults.partials() and not jn.JOURNAL.exists()
    _assert_intact(data)
    _next_backup_and_restore_succeed(data)


def test_two_interrupted_backups_in_a_row_never_lose_the_original(tmp_path, _setting_back):
    data = _dataset("twice")
    for i in range(2):  # the second backup's own start undoes the first: it never sees 0 as "original"
        (tmp_path / str(i)).mkdir()
        out = faults.killed_at(["backup"], "paused-rewrites", tmp_path / str(i))
        assert f"auto-aof-rewrite-percentage was {_setting_back})" in out
        assert _setting() == "0"
    out = d.invoke("recover").stdout
    assert f"recover: set {SETTING} back to {_setting_back} (changed by the backup)" in out
    assert _setting() == _setting_back and not faults.partials()
    assert d.invoke("recover").stdout.strip().endswith(f"no interrupted operation on instance {INSTANCE.name}")
    _next_backup_and_restore_succeed(data)


# ---- restore killed at each step ---------------------------------------------------------------
@pytest.fixture(scope="module")
def restore_source():
    data = _dataset("restore-src")
    return _backup(), data


EARLY = ("stopped-services", "stopped-redis", "saving-current")  # before any live data changed


@pytest.mark.parametrize("step", [*EARLY, "putting-back", "checking", "restarting"])
def test_restore_killed_at_a_step_is_finished_by_recover(step, restore_source, tmp_path):
    name, data = restore_source
    c = d.client()
    c.set("tenant-a:fault:after-backup", "not in the backup")
    time.sleep(1.5)
    faults.killed_at(["restore", name, "--yes"], step, tmp_path)

    refused = d.invoke("up", "--tenant", "a", check=False)
    line = faults.one_error_line(refused.stderr)
    assert refused.returncode == 2
    assert f"a restore of backup {name} was interrupted" in line and "./invoke recover" in line

    out = d.invoke("recover").stdout
    told = [x for x in out.splitlines() if x.startswith("recover: ")]
    assert any("the restore of" in x for x in told), out
    if step in EARLY:
        assert any("no live data had been changed yet" in x for x in told), out
        assert c.get("tenant-a:fault:after-backup") == b"not in the backup"
    else:
        assert any(x.startswith("recover: finished") or "already in place" in x for x in told), out
        assert c.get("tenant-a:fault:after-backup") is None
    _all_healthy()
    assert not faults.partials() and not jn.JOURNAL.exists()
    _assert_intact(data)
    c.delete("tenant-a:fault:after-backup")
    _next_backup_and_restore_succeed(data)


def test_recover_rollback_undoes_a_half_done_restore(restore_source, tmp_path):
    name, data = restore_source
    c = d.client()
    c.set("tenant-a:fault:after-backup", "kept by the rollback")
    time.sleep(1.5)
    faults.killed_at(["restore", name, "--yes"], "putting-back", tmp_path)
    out = d.invoke("recover", "--rollback").stdout
    assert "recover: rolled back: the data from before the restore is live again" in out
    assert c.get("tenant-a:fault:after-backup") == b"kept by the rollback"
    _all_healthy()
    _assert_intact(data)
    c.delete("tenant-a:fault:after-backup")


# ---- a full disk -------------------------------------------------------------------------------
@pytest.fixture
def small_backups_disk(request):
    """A tmpfs of the given size mounted on this test instance's backups folder only; unmounted after."""
    size = request.param
    BACKUPS.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(BACKUPS)], check=True)
    try:
        yield size
    finally:
        subprocess.run(["umount", str(BACKUPS)], check=True)


@pytest.mark.parametrize("small_backups_disk", ["4m"], indirect=True)
def test_backup_and_restore_refuse_when_the_disk_is_too_small(small_backups_disk, restore_source, tmp_path):
    name, data = restore_source
    started = d.inspect(d.container("tenant-a-web"))["State"]["StartedAt"]
    proc = d.invoke("backup", check=False)
    line = faults.one_error_line(proc.stderr)
    assert proc.returncode == 2 and re.search(rf"backup needs about [\d.]+ MiB free in {re.escape(str(BACKUPS))} "
                                              r".* but only [\d.]+ MiB is free", line), line
    assert not faults.partials()

    # restore's pre-restore copy goes to the same full folder: refused before anything is stopped
    source = tmp_path / name
    subprocess.run(["umount", str(BACKUPS)], check=True)
    try:
        subprocess.run(["cp", "-a", str(BACKUPS / name), str(source)], check=True)
    finally:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(BACKUPS)], check=True)
    proc = d.invoke("restore", str(source), "--yes", check=False)
    line = faults.one_error_line(proc.stderr)
    assert proc.returncode == 2 and "(the pre-restore copy of the live data) needs about" in line, line
    assert d.inspect(d.container("tenant-a-web"))["State"]["StartedAt"] == started
    _assert_intact(data)


@pytest.mark.parametrize("small_backups_disk", ["32m"], indirect=True)
def test_disk_filling_up_during_the_copy_ends_in_one_line(small_backups_disk, tmp_path, _setting_back):
    data = _dataset("enospc")
    proc = faults.stopped_at(["backup"], "copy", tmp_path)
    filler = BACKUPS / "filler"
    faults.fill_disk(filler)  # another process fills the disk while the backup copies
    code, out, err = faults.resume(proc, tmp_path)
    line = faults.one_error_line(err)
    assert code == 2 and "no space left on the device" in line and line.endswith("nothing was kept"), line
    assert not faults.partials() and not jn.JOURNAL.exists() and _setting() == _setting_back
    _assert_intact(data)
    filler.unlink()
    _next_backup_and_restore_succeed(data)


# ---- Redis dies mid-backup ---------------------------------------------------------------------
def test_redis_killed_during_a_backup(tmp_path, _setting_back):
    data = _dataset("redis-killed")
    proc = faults.stopped_at(["backup"], "bgsave", tmp_path)
    subprocess.run(["docker", "kill", d.container("redis")], check=True, capture_output=True)  # this instance's only
    code, out, err = faults.resume(proc, tmp_path)
    line = faults.one_error_line(err)
    assert code == 2, line
    assert re.match(r"error: backup \S+ failed: .*Redis", line) and line.endswith("nothing was kept"), line
    assert not faults.partials()
    d.invoke("up")
    _all_healthy()
    assert not jn.JOURNAL.exists()
    assert "failed" in (STATE / "last-backup.json").read_text()
    _assert_intact(data)
    _next_backup_and_restore_succeed(data)


# ---- a rebooted host ---------------------------------------------------------------------------
def _runner_pid() -> int | None:
    return daemons.pid_of("healthcheck-runner")


def _api_service_pid() -> int | None:
    return daemons.pid_of("podman-service", b"service")


def _engine_gone() -> str | None:
    return None if subprocess.run(["docker", "version"], capture_output=True).returncode else "the engine to be gone"


def test_reboot_up_brings_everything_back_with_no_task_lost(_setting_back):
    data = _dataset("reboot")
    compose.run("stop", naming.service_name("a", "worker"), profiles=compose.all_profiles(), quiet=True)
    queued = [d.post_echo("a", f"queued-{i}") for i in range(5)]
    time.sleep(1.5)  # appendfsync everysec: what a power cut would keep
    label = f"label=com.docker.compose.project={INSTANCE.compose_project}"
    ids = subprocess.run(["docker", "ps", "-q", "--filter", label],
                         capture_output=True, text=True, check=True).stdout.split()
    assert len(ids) >= len(SERVICES) - 1
    subprocess.run(["docker", "kill", *ids], capture_output=True)  # this test instance's containers only
    # No init system: nothing restarts the engine's host-side processes; each is killed by its pid file,
    # never by name. Docker Engine runs with live-restore, so other instances' containers keep running.
    podman = provision.podman_in_use()  # the engine answering, not what is installed
    docker = not podman and dockerd.provisioned() and provision.target_socket() == dockerd.socket()
    if podman:
        pid, api = _runner_pid(), _api_service_pid()
        assert pid, "the healthcheck runner is not running"
        assert api, "the Podman API service was not started by ./invoke engine"
        os.kill(pid, signal.SIGKILL)
        os.kill(api, signal.SIGKILL)  # running containers stay up (conmon owns them); the docker CLI stops answering
        wait_until(_engine_gone, timeout=30, what="killing the Podman API service")
    elif docker:
        daemon = dockerd.pid()
        assert daemon, "dockerd was not started by ./invoke engine"
        os.kill(daemon, signal.SIGKILL)
        wait_until(_engine_gone, timeout=30, what="killing dockerd")

    out = d.invoke("up").stdout  # no arguments: what was running before
    assert re.search(r"up: .*tenant-a-worker.* healthy in", out), out
    _all_healthy()
    if podman:
        assert _runner_pid() and _runner_pid() != pid
        assert _api_service_pid() and _api_service_pid() != api
        assert "starting the Podman API service" in out, out
    if docker:
        assert dockerd.pid() and dockerd.pid() != daemon
        assert "starting Docker Engine (dockerd)" in out, out
    results = d.wait_for_results("a", queued, timeout=180)
    assert sorted(r["result"]["value"] for r in results.values()) == [f"queued-{i}" for i in range(5)]
    _assert_intact(data)
    _next_backup_and_restore_succeed(data)


def test_a_volume_job_left_by_a_killed_run_is_removed_by_recover():
    """A restore killed mid-copy leaves its job container writing into a volume: recover removes it first."""
    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid whose process is gone, as a SIGKILLed ./invoke leaves it
    jobs = {"orphan": dead.pid, "live": os.getpid()}
    names = {k: f"{INSTANCE.compose_project}-job-test{k}{os.getpid()}" for k in jobs}
    for kind, owner in jobs.items():
        subprocess.run(["docker", "run", "-d", "--name", names[kind],
                        "--label", f"{containers.JOB_OWNER_LABEL}={owner}",
                        "--label", f"{containers.JOB_INSTANCE_LABEL}={INSTANCE.name}", "--network", "none",
                        "--entrypoint", "sleep", compose.image("redis"), "600"], check=True, capture_output=True)
    try:
        out = d.invoke("recover").stdout
        assert f"removed the volume job {names['orphan']} that a killed run (pid {dead.pid}) left" in out, out
        assert names["live"] not in out  # a live process's job is never touched
        running = subprocess.run(["docker", "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True,
                                 check=True).stdout.split()
        assert names["orphan"] not in running and names["live"] in running
    finally:
        subprocess.run(["docker", "rm", "-f", *names.values()], capture_output=True)


# ---- private backups ---------------------------------------------------------------------------
def test_backups_and_pre_restore_copies_are_private_and_restore_refuses_tampered_ones(restore_source, tmp_path):
    name, data = restore_source
    out = d.invoke("restore", name, "--yes").stdout
    aside = BACKUPS / re.search(r"previous data kept in \S*?(pre-restore-\S+)", out).group(1)
    for folder in (BACKUPS / name, aside):
        for p in [folder, *folder.rglob("*")]:
            mode = p.stat().st_mode & 0o777
            assert mode == (0o700 if p.is_dir() else 0o600), f"{p}: {mode:o}"
            assert p.stat().st_uid == 0
    for change, needle in (("chmod", "writable by group or others"), ("chown", "owned by uid 4242")):
        copy = tmp_path / f"{change}-{name}"
        subprocess.run(["cp", "-a", str(BACKUPS / name), str(copy)], check=True)
        victim = copy / "redis" / "dump.rdb"
        victim.chmod(0o620) if change == "chmod" else os.chown(victim, 4242, 4242)
        proc = d.invoke("restore", str(copy), "--yes", check=False)
        line = faults.one_error_line(proc.stderr)
        assert proc.returncode == 2 and "is not safe to restore: redis/dump.rdb" in line and needle in line, line
    _assert_intact(data)
