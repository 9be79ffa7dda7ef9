"""`./invoke tenant-remove c`: a verified archive first, then nothing of c remains, while tenant a serves on with no
failed request and no lost task and nothing else restarts; the archive brings c's keys back into a fresh tenant c."""
import re

import pytest

from deployment import naming
from ops.config.paths import INSTANCE
from ops.config.tenants import env_path, known_names
from ops.data import backup_format as fmt
from ops.data import tenant_remove
from tests.support import deployment as d
from tests.support import faults, load_loop, tenant_lifecycle

TTL_MS = 3_600_000
OTHERS = ["redis", "tenant-a-web", "tenant-a-worker", "tenant-a-beat", "tenant-b-web", "tenant-b-worker"]


def _write_keys(c) -> dict:
    p = "tenant-c:rm:"
    c.set(p + "str", "value-c")
    c.hset(p + "hash", mapping={"f1": "1", "f2": "c"})
    c.rpush(p + "list", *[f"item-{i}" for i in range(20)])
    c.set(p + "ttl", "expiring", px=TTL_MS)
    return {k: _read(c, k) for k in (p + s for s in ("str", "hash", "list", "ttl"))}


def _read(c, key: str):
    kind = c.type(key).decode()
    read = {"string": c.get, "hash": c.hgetall, "list": lambda k: c.lrange(k, 0, -1), "none": lambda k: None}
    value = read[kind](key)
    return kind, value, c.execute_command("PEXPIRETIME", key)


def _started() -> dict:
    return {s: d.inspect(d.container(s))["State"]["StartedAt"] for s in OTHERS}


@pytest.mark.usefixtures("tenants_up")
def test_remove_leaves_only_the_archive_and_the_archive_restores_into_a_fresh_tenant(tmp_path):
    """The removal is SIGKILLed half-way (its keys step) and `recover` finishes it, all while a serves on; a removal
    killed before its archive exists is forgotten by `recover` with nothing removed."""
    tenant_lifecycle.add("c")
    try:
        d.invoke("up", "--tenant", "c")
        expected = _write_keys(d.client())
        ids = [d.post_echo("c", f"task-{i}") for i in range(5)]
        d.wait_for_results("c", ids)
        run_id, started = d.client().info("server")["run_id"], _started()
        (tmp_path / "keys").mkdir()
        with load_loop.Load("a") as load:
            out = faults.killed_at(["tenant-remove", "c", "--yes"], "remove-keys", tmp_path / "keys")
            said = d.invoke("recover").stdout
        report = load.finish()
        print(report.line())
        assert report.failed_requests == [] and report.lost_tasks == [], report.line()
        assert d.client().info("server")["run_id"] == run_id and _started() == started  # nothing else restarted
        assert "finishing the removal of tenant c from step keys" in said and "nothing of tenant c remains" in said
        archive = INSTANCE.root / re.search(r"archive (\S+) verified", out).group(1)
        assert archive.parent == tenant_remove.ARCHIVES and archive.name.startswith("c-"), archive
        assert tenant_remove.remains("c") == []
        assert "c" not in known_names() and archive.is_dir()
        fmt.verify(archive, log=lambda m: None)

        tenant_lifecycle.add("c")  # the same name again: a fresh tenant, its archive restored into it
        assert all(d.client().type(k) == b"none" for k in expected)
        d.invoke("restore", str(archive), "--tenant", "c", "--yes")
        assert {k: _read(d.client(), k) for k in expected} == expected
        d.invoke("up", "--tenant", "c")

        (tmp_path / "archive").mkdir()
        faults.killed_at(["tenant-remove", "c", "--yes"], "remove-archive", tmp_path / "archive")
        said = d.invoke("recover").stdout
        assert "stopped before its archive was written: nothing of it was removed" in said
        # It had stopped c's services for the archive: they run again.
        assert "its services started again" in said and d.inspect_running(naming.service_name("c", "web")), said
        assert env_path("c").exists() and {k: _read(d.client(), k) for k in expected} == expected
    finally:
        if env_path("c").exists():
            tenant_lifecycle.remove("c")


def test_unknown_tenant_is_refused_in_one_line_and_nothing_changes():
    before = known_names()
    proc = d.invoke("tenant-remove", "zz", "--yes", check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == (f"error: unknown tenant 'zz': known tenants are {', '.join(before)}; "
                                   "nothing was removed")
    assert known_names() == before and not list(tenant_remove.ARCHIVES.glob("zz-*"))


def test_remove_without_yes_when_stdin_is_not_a_terminal_is_refused_and_b_stays():
    proc = d.invoke("tenant-remove", "b", check=False, input="")
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("error: tenant-remove deletes tenant b's data (an archive is kept) and stdin is "
                                   "not a terminal: add --yes to confirm")
    assert env_path("b").exists() and not list(tenant_remove.ARCHIVES.glob("b-*"))
