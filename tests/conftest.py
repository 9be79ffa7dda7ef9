"""The suite runs only on a throwaway instance of its own (`./invoke test` makes one and removes it).

Every test that touches a deployment touches that instance: its Compose project, ports, env files,
secrets, backups and volumes. Run bare, pytest would work on whatever TENANTSTACK_INSTANCE names,
which may be an operator's; so it refuses.
"""
import os

import pytest

from deployment import ports
from tests.support import command_recorder
from tests.support import local_redis as _local_redis


def pytest_configure(config):
    if not os.environ.get(ports.THROWAWAY_VAR):
        pytest.exit("the tests run on a throwaway instance of their own: run them with `./invoke test` "
                    "(pytest alone would use the instance in TENANTSTACK_INSTANCE, maybe yours)", returncode=2)


@pytest.fixture(scope="session")
def local_redis(tmp_path_factory):
    """A real TLS-only redis-server with the project's redis.conf and ACL users for tenants a and b."""
    server = _local_redis.start(tmp_path_factory.mktemp("redis"))
    recorder = None
    if os.environ.get(command_recorder.RECORD_VAR):  # development aid: see tests/support/command_recorder.py
        recorder = command_recorder.Recorder(server, os.environ[command_recorder.RECORD_VAR]).start()
    yield server
    if recorder:
        recorder.stop()
    server.stop()
