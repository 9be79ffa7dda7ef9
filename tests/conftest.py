import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "app")]

from tests.support import local_redis as _local_redis  # noqa: E402


@pytest.fixture(scope="session")
def local_redis(tmp_path_factory):
    """A real TLS-only redis-server with the project's redis.conf and ACL users for tenants a and b."""
    server = _local_redis.start(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()
