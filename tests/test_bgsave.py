"""bgsave reports success only when Redis really wrote a new snapshot (LASTSAVE moved, status ok)."""
import os
import tempfile
from pathlib import Path

import pytest

from ops.core.errors import OpsError
from ops.data import bgsave as bg
from tests.support import local_redis


@pytest.fixture
def unprivileged_redis():
    root = Path(tempfile.mkdtemp(prefix="tenantstack-bgsave-"))
    os.chmod(root, 0o755)
    server = local_redis.start(root, run_as="nobody")
    yield server
    server.stop()


def test_bgsave_succeeds_only_after_lastsave_moved(unprivileged_redis):
    c = unprivileged_redis.client()
    c.set("k", "v")
    before = c.lastsave()
    seconds = bg.bgsave(c, timeout=30, log=lambda m: None)
    assert c.lastsave() > before
    assert c.info("persistence")["rdb_last_bgsave_status"] == "ok"
    assert seconds > 0


def test_bgsave_fails_loudly_when_the_save_fails(unprivileged_redis):
    c = unprivileged_redis.client()
    c.set("k", "v")
    data = unprivileged_redis.dir / "data"
    data.chmod(0o555)  # redis (nobody) can no longer create temp-*.rdb
    try:
        before = c.lastsave()
        with pytest.raises(OpsError) as exc:
            bg.bgsave(c, timeout=30, log=lambda m: None)
        assert c.lastsave() == before
        message = str(exc.value)
        assert "\n" not in message and message.startswith("BGSAVE failed (rdb_last_bgsave_status:err)")
    finally:
        data.chmod(0o755)


def test_bgsave_waits_for_a_save_already_running(unprivileged_redis):
    c = unprivileged_redis.client()
    c.set("k", "v")
    c.bgsave()  # someone else's save, started before ours
    before = c.lastsave()
    bg.bgsave(c, timeout=30, log=lambda m: None)
    assert c.lastsave() >= before and not c.info("persistence")["rdb_bgsave_in_progress"]
