"""The suite runs only on a throwaway instance of its own (`./invoke test` makes one and removes it).

Every test that touches a deployment touches that instance: its Compose project, ports, env files,
secrets, backups and volumes. Run bare, pytest would work on whatever TENANTSTACK_INSTANCE names,
which may be an operator's; so it refuses.
"""
import os

import pytest

from deployment import ports
from tests.support import acl_log, command_recorder
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


# Tests that use the real server of the instance (containers): these fixtures bring it up.
INSTANCE_SERVER_FIXTURES = ("redis_up", "tenants_up", "everything_up")


@pytest.fixture(autouse=True)
def _acl_log_stays_empty(request):
    """After every test, the server it used has no ACL LOG entry unless the test attacks on purpose.

    Legitimate traffic (Celery, kombu, redis-py, Django, the monitoring users) must never be refused: a
    refusal there is a command missing from a user's rule, or a client sending what it should not. Each
    test's entries are read and cleared after it, so an entry is blamed on the test it appeared in.
    Tests marked `attacks` send refused commands on purpose (their own assertions check the refusals)."""
    yield
    servers = []
    if "local_redis" in request.fixturenames:
        servers.append(("the fast test server", lambda: request.getfixturevalue("local_redis").client()))
    if any(name in request.fixturenames for name in INSTANCE_SERVER_FIXTURES):
        from tests.support import deployment
        servers.append(("the test instance's server", deployment.client))
    for where, connect in servers:
        entries = acl_log.take(connect)
        if entries and not request.node.get_closest_marker("attacks"):
            pytest.fail(f"{where}'s ACL LOG has {len(entries)} refusal(s) after {request.node.name}, which sends no "
                        f"attack: {acl_log.summary(entries)}", pytrace=False)


# Wall time per test module (setup, call and teardown of its tests; a session fixture counts where it is
# first set up), printed at the end of every run: `.ci/run` shows it per leg, and the README's table of
# where the time goes is taken from it.
_MODULE_SECONDS: dict[str, float] = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    import time

    started = time.monotonic()
    yield
    module = item.nodeid.split("::", 1)[0]
    _MODULE_SECONDS[module] = _MODULE_SECONDS.get(module, 0.0) + time.monotonic() - started


def pytest_terminal_summary(terminalreporter):
    if not _MODULE_SECONDS:
        return
    terminalreporter.section("wall time per module")
    for module, seconds in sorted(_MODULE_SECONDS.items(), key=lambda kv: -kv[1]):
        terminalreporter.write_line(f"module-time {seconds:8.1f}s  {module}")
    terminalreporter.write_line(f"module-time {sum(_MODULE_SECONDS.values()):8.1f}s  (all modules)")
