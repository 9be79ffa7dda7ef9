import pytest

from tests.support.deployment import invoke


def pytest_collection_modifyitems(items):
    for item in items:
        if "/containers/" in str(item.fspath):
            item.add_marker(pytest.mark.containers)


@pytest.fixture(scope="session")
def redis_up():
    """The real redis service, up and healthy through ./invoke up (idempotent)."""
    invoke("up")


@pytest.fixture(scope="session")
def tenants_up(redis_up):
    """Redis plus tenants a and b (web, worker, beat), all healthy."""
    invoke("up", "--tenant", "a", "--tenant", "b")


@pytest.fixture(scope="session")
def everything_up(redis_up):
    """Every service of the deployment: Redis, tenants a and b, and the tools UI, all healthy."""
    invoke("up", "--tools", "--tenant", "a", "--tenant", "b")
