"""`./invoke backup-schedule --once` (the cron form of the backup strategy) on the test instance: each run takes a
verified whole backup and one of tenant b, the copy hook copies each byte for byte into a local target, retention
removes only the oldest beyond BACKUP_KEEP_WHOLE / BACKUP_KEEP_TENANT and never an archive, the textfile metrics the
alerts read move; a failing hook leaves the backups and fails the run in one line."""
import datetime as dt
import json
import os
import re
import shutil
import signal
import subprocess
import time

import pytest

from ops.config.paths import BACKUPS, INSTANCE
from ops.data import backup_format as fmt
from ops.data import retention, schedule, tenant_backup
from ops.monitor import textfile
from tests.support import deployment as d

pytestmark = pytest.mark.usefixtures("tenants_up")
# The documented shell form for a copy that needs one: mkdir + cp into <target>/<name>/, the backup as "$1".
COPY = "sh -c 'mkdir -p \"$3/$2\" && cp -a \"$1/.\" \"$3/$2/\"' sh {path} {name} "


@pytest.fixture
def policy():
    """Writes this test's envs/backup.env; the instance's own is put back afterwards."""
    path = INSTANCE.backup_env
    before = path.read_text() if path.exists() else None

    def write(**values):  # each value double-quoted, as an operator would write a command with spaces
        quoted = {k: str(v).replace("\\", "\\\\").replace('"', '\\"') for k, v in values.items()}
        path.write_text("".join(f'{k}="{v}"\n' for k, v in quoted.items()))
    yield write
    if before is None:
        path.unlink(missing_ok=True)
    else:
        path.write_text(before)


def _run(check=True):
    proc = d.invoke("backup-schedule", "--once", check=check)
    last = schedule.LOG.read_text().splitlines()[-1]
    assert last in proc.stdout, proc.stdout[-2000:]  # the one line is both printed and logged
    return proc, last


def _made(line: str) -> tuple[str, str]:
    """(the whole backup's name, tenant b's) a run's line names."""
    whole, tenant = re.search(r"whole (\d{8}T\d{6}Z)", line), re.search(r"(tenant-b/\d{8}T\d{6}Z)", line)
    assert whole and tenant, line
    return whole.group(1), tenant.group(1)


def _files(folder) -> dict:
    return {p.relative_to(folder).as_posix(): fmt.sha256(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def _metrics() -> dict[str, float]:
    text = textfile.BACKUP_FILE.read_text() + textfile.COPY_FILE.read_text()
    return {m.group(1): float(m.group(2)) for m in re.finditer(r"(?m)^(tenantstack_\w+) (\S+)$", text)}


def _created(name: str) -> float:
    manifest = json.loads((BACKUPS / name / "manifest.json").read_text())
    return dt.datetime.fromisoformat(manifest["created"]).timestamp()


def test_scheduled_runs_back_up_copy_prune_and_report_a_failing_copy(policy, tmp_path):
    target = tmp_path / "offsite"
    existing = [p.name for p in retention.complete(BACKUPS)]
    existing_b = [f"tenant-b/{p.name}" for p in retention.complete(BACKUPS / "tenant-b")]
    # Three runs: exactly the oldest of each kind is beyond the policy after the third.
    keep = {"BACKUP_KEEP_WHOLE": len(existing) + 2, "BACKUP_KEEP_TENANT": len(existing_b) + 2, "BACKUP_TENANTS": "b"}
    policy(**keep, BACKUP_COPY_COMMAND=f"{COPY}{target}")

    proc, line = _run()
    first, first_b = _made(line)
    assert line.split(" backup-schedule: ")[1].startswith("ok "), line
    for name in (first, first_b):
        assert f"copy of {name} ok" in line
        fmt.verify(BACKUPS / name, log=lambda m: None)
        assert _files(target / name) == _files(BACKUPS / name)  # every file, byte for byte
    after_first = _metrics()
    assert after_first["tenantstack_backup_last_verified_timestamp_seconds"] == round(_created(first))
    assert after_first["tenantstack_backup_copy_failed"] == 0
    assert after_first["tenantstack_backup_copy_last_success_timestamp_seconds"] > 0

    # A removed tenant's archive, a real one (what tenant-remove writes): retention never looks there.
    archive = tenant_backup.create("b", parent=retention.ARCHIVES, log=lambda m: None)
    archived = _files(archive)

    policy(**keep, BACKUP_COPY_COMMAND="false")
    proc, line = _run(check=False)
    second, second_b = _made(line)
    assert proc.returncode != 0 and "FAILED" in line and f"copy of {second} failed" in line and "(exit 1" in line
    said = proc.stderr.strip().splitlines()
    assert len(said) == 1 and f"copy of {second} failed" in said[0] and f"copy of {second_b} failed" in said[0], \
        proc.stderr
    for name in (second, second_b):  # the local backups stay, verified before the copy
        fmt.verify(BACKUPS / name, log=lambda m: None)
    failed = _metrics()
    assert failed["tenantstack_backup_copy_failed"] == 1
    assert failed["tenantstack_backup_copy_last_success_timestamp_seconds"] == \
        after_first["tenantstack_backup_copy_last_success_timestamp_seconds"]
    assert failed["tenantstack_backup_last_verified_timestamp_seconds"] == round(_created(second))

    policy(**keep, BACKUP_COPY_COMMAND=f"{COPY}{target}")
    proc, line = _run()
    third, third_b = _made(line)
    wholes, tenant_bs = [*existing, first, second, third], [*existing_b, first_b, second_b, third_b]
    assert [p.name for p in retention.complete(BACKUPS)] == wholes[1:]  # the oldest, and only it, removed
    assert [f"tenant-b/{p.name}" for p in retention.complete(BACKUPS / "tenant-b")] == tenant_bs[1:]
    assert line.split("; removed ", 1)[1].split(";")[0] == f"{wholes[0]}, {tenant_bs[0]}", line
    assert archive.is_dir() and _files(archive) == archived
    for name in (third, third_b):
        assert _files(target / name) == _files(BACKUPS / name)
    assert _metrics()["tenantstack_backup_copy_failed"] == 0
    assert _metrics()["tenantstack_backup_last_verified_timestamp_seconds"] == round(_created(third))
    shutil.rmtree(archive)


def test_the_loop_runs_the_policy_every_interval_until_stopped(policy):
    policy(BACKUP_KEEP_WHOLE=len(retention.complete(BACKUPS)) + 3)  # no tenants, no copy: just the rhythm
    logged = len(schedule.LOG.read_text().splitlines()) if schedule.LOG.exists() else 0
    loop = subprocess.Popen([d.INVOKE, "backup-schedule", "--every", "15s"], cwd=d.ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while len(lines := schedule.LOG.read_text().splitlines()[logged:] if schedule.LOG.exists() else []) < 2:
            assert loop.poll() is None and time.monotonic() < deadline, (loop.poll(), lines)
            time.sleep(0.2)
    finally:
        os.killpg(loop.pid, signal.SIGTERM)  # while it sleeps until the third run (the group: ./invoke's python)
        out = loop.communicate(timeout=30)[0]
    assert all(" backup-schedule: ok " in line for line in lines), lines
    first, second = (dt.datetime.fromisoformat(line.split(" ", 1)[0]) for line in lines)
    assert (second - first).total_seconds() >= 10, lines  # the second waited for the interval
    assert "next run at" in out and "(every 15s)" in out, out[-2000:]
