"""Every service runs under memory, CPU and pids limits, so one tenant cannot starve the others or Redis.

The tenants' limits come from their env files (deployment/envs.py rows *_MEMORY_MB, *_CPUS, PIDS_LIMIT),
Redis' and the UI's are fixed in compose/compose.yaml; the engine must actually apply them
(`docker inspect`: HostConfig.Memory, NanoCpus, PidsLimit). Then a compromised tenant tries to take more.
"""
import re
import subprocess

import pytest
import yaml

from deployment import envs, naming
from ops.config.envfile import read_env
from ops.config.paths import COMPOSE_FILE
from ops.config.tenants import env_path
from tests.support import deployment as d

pytestmark = pytest.mark.usefixtures("everything_up")
UNITS = {"k": 2**10, "m": 2**20, "g": 2**30}


def _bytes(size: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([kmg])", str(size).lower()).groups()
    return int(number) * UNITS[unit]


def _applied(service: str) -> tuple[int, int, int, int]:
    host = d.inspect(d.container(service))["HostConfig"]
    return host["Memory"], host.get("MemorySwap"), host["NanoCpus"], host["PidsLimit"]


def _tenant_setting(tenant: str, key: str) -> str:
    return envs.value_of(envs.TENANT[key], read_env(env_path(tenant)))


@pytest.mark.parametrize("service", [naming.REDIS_SERVICE, naming.TOOLS_SERVICE])
def test_redis_and_the_ui_get_their_fixed_limits(service):
    declared = yaml.safe_load(COMPOSE_FILE.read_text())["services"][service]
    memory = _bytes(declared["mem_limit"])
    assert _applied(service) == (memory, memory, int(float(declared["cpus"]) * 1e9), int(declared["pids_limit"]))
    if service == naming.REDIS_SERVICE:
        assert memory > 1024 * 2**20  # above the maxmemory Redis uses by default (1024 MB)


@pytest.mark.parametrize("tenant", ["a", "b"])
@pytest.mark.parametrize("role", naming.ROLES)
def test_every_tenant_service_gets_the_limits_of_its_settings(tenant, role):
    memory = int(_tenant_setting(tenant, f"{role.upper()}_MEMORY_MB")) * 2**20
    cpus = int(float(_tenant_setting(tenant, f"{role.upper()}_CPUS")) * 1e9)
    pids = int(_tenant_setting(tenant, "PIDS_LIMIT"))
    assert _applied(naming.service_name(tenant, role)) == (memory, memory, cpus, pids)
    assert memory and cpus and pids


def _exec_python(service: str, script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", "exec", d.container(service), "python", "-c", script, *args],
                          capture_output=True, text=True, timeout=120)


# Bounded on purpose: without a limit it stops by itself at limit + 64, harmless to the host.
THREAD_BOMB = """
import sys, threading, time
made = 0
try:
    for _ in range(int(sys.argv[1]) + 64):
        threading.Thread(target=time.sleep, args=(20,), daemon=True).start()
        made += 1
except RuntimeError:
    pass
print(made)
"""


def test_a_fork_bomb_in_tenant_a_stops_at_its_pids_limit_and_b_keeps_answering():
    limit = int(_tenant_setting("a", "PIDS_LIMIT"))
    proc = _exec_python(naming.service_name("a", "worker"), THREAD_BOMB, str(limit))
    assert proc.returncode == 0, proc.stderr[-1000:]
    assert int(proc.stdout) < limit  # the container's other processes count too
    assert d.http("GET", d.web_url("b", "/healthz"))[0] == 200


def test_tenant_a_taking_more_memory_than_its_limit_is_killed_and_b_keeps_answering():
    limit_mb = int(_tenant_setting("a", "WEB_MEMORY_MB"))
    # Touches every page (bytes * n fills them), so the memory is really used, not just reserved.
    hog = "import sys; b = b'x' * (int(sys.argv[1]) << 20); print('kept')"
    proc = _exec_python(naming.service_name("a", "web"), hog, str(limit_mb + 128))
    assert "kept" not in proc.stdout and proc.returncode in (137, -9), (proc.returncode, proc.stderr[-500:])
    assert d.http("GET", d.web_url("b", "/healthz"))[0] == 200
    assert d.http("GET", d.web_url("a", "/healthz"))[0] == 200  # the kernel killed the hog, not a's gunicorn
