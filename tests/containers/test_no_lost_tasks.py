"""At-least-once delivery: 500 tasks survive killed pool processes, a killed worker container and a Redis restart.

Counted, with the one exception kombu's Redis transport has today: its consumer takes a message with
BRPOP and books it as unacknowledged in a second step (MULTI ZADD HSET EXEC), so a worker container
killed (or a connection lost) between the two loses that message: it is in neither the queue nor the
unacked index, and the worker never logged it as received. At most one message is in that window per
killed consumer; the test allows exactly that and nothing else (any other loss, or a lost task the
worker had received, fails it). The tenant transport of the quota work books in the same step as it
takes, and then this test counts zero again.
"""
import collections
import re
import subprocess
import time

import pytest

from deployment import naming
from ops.config.paths import ARTIFACTS
from ops.config.tenants import env_path
from ops.deploy import compose
from tests.support import deployment as d

pytestmark = [pytest.mark.usefixtures("tenants_up"), pytest.mark.slow]
N = 500
VISIBILITY = 30  # short for the test; the shipped default is 3600 s (see README: Delivery guarantees)
WORKER = naming.service_name("a", "worker")
WEB = naming.service_name("a", "web")

KILL_POOL = """
import os, signal
main = min(int(p) for p in os.listdir('/proc') if p.isdigit() and b'worker' in open(f'/proc/{p}/cmdline','rb').read()
           and b'celery' in open(f'/proc/{p}/cmdline','rb').read())
kids = [int(p) for p in os.listdir('/proc') if p.isdigit()
        and open(f'/proc/{p}/stat').read().rsplit(')', 1)[1].split()[1] == str(main)]
for k in kids:
    os.kill(k, signal.SIGKILL)
print(len(kids))
"""

ENQUEUE = """
import os, django
os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'tenantstack.settings')
django.setup()
from jobs.tasks import slow_echo
for i in range({n}):
    print(slow_echo.apply_async(args=[i, 0.05]).id)
"""


@pytest.fixture
def short_visibility():
    """Tenant a restarted with a 30 s visibility timeout (and a task time limit below it)."""
    path = env_path("a")
    original = path.read_text()
    overridden = ("CELERY_VISIBILITY_TIMEOUT=", "CELERY_TASK_TIME_LIMIT=")
    lines = [line for line in original.splitlines() if not line.startswith(overridden)]
    path.write_text("\n".join(lines + [f"CELERY_VISIBILITY_TIMEOUT={VISIBILITY}", "CELERY_TASK_TIME_LIMIT=20"]) + "\n")
    try:
        d.invoke("up", "--tenant", "a")
        yield
    finally:
        path.write_text(original)
        d.invoke("up", "--tenant", "a")


def _docker(*argv):
    return subprocess.run(["docker", *argv], capture_output=True, text=True, timeout=120)


def _successes_by_id() -> collections.Counter:
    log = _docker("logs", d.container(WORKER))
    succeeded = r"Task jobs\.tasks\.slow_echo\[([0-9a-f-]{36})\] succeeded"
    return collections.Counter(re.findall(succeeded, log.stdout + log.stderr))


def test_no_task_is_lost_when_workers_and_redis_die(short_visibility):
    t0 = time.monotonic()
    out = _docker("exec", d.container(WEB), "python", "-c", ENQUEUE.format(n=N))
    assert out.returncode == 0, out.stderr
    ids = out.stdout.split()
    assert len(ids) == N
    time.sleep(3)
    killed = _docker("exec", d.container(WORKER), "python", "-c", KILL_POOL)
    assert killed.returncode == 0 and int(killed.stdout) >= 1, killed.stderr
    time.sleep(3)
    assert _docker("kill", "--signal", "KILL", d.container(WORKER)).returncode == 0
    time.sleep(1)
    if not d.inspect(d.container(WORKER))["State"]["Running"]:
        assert _docker("start", d.container(WORKER)).returncode == 0
    time.sleep(5)
    compose.run("restart", "redis", profiles=compose.all_profiles(), quiet=True)
    try:
        results, _ = d.poll_results(lambda task_id: d.task_status("a", task_id), ids, timeout=VISIBILITY * 6)
    finally:  # the worker's log explains any loss; the fixture recreates the container afterwards
        ARTIFACTS.mkdir(exist_ok=True)
        log = _docker("logs", d.container(WORKER))
        (ARTIFACTS / "no-lost-tasks-worker.log").write_text(log.stdout + log.stderr)
    missing = [i for i in ids if i not in results]
    if missing:  # only kombu's take-then-book window may lose one, as the module docstring says
        received = set(re.findall(r"slow_echo\[([0-9a-f-]{36})\] received", log.stdout + log.stderr))
        op, prefix = d.client(), naming.key_prefix("a")
        assert len(missing) == 1, f"{len(missing)} tasks lost, e.g. {missing[:3]}"
        assert not set(missing) & received, f"a task the worker had received was lost: {missing}"
        assert op.llen(prefix + naming.queue_name("a")) == 0 and op.hlen(prefix + "unacked") == 0
        print(f"\nno-lost-tasks: 1 task ({missing[0]}) lost in kombu's take-then-book window: popped by the "
              "killed consumer, never received, booked nowhere")
    assert {r["status"] for r in results.values()} == {"SUCCESS"}
    lost_values = {ids.index(i) for i in missing}
    assert sorted(r["result"]["value"] for r in results.values()) == [v for v in range(N) if v not in lost_values]
    runs = _successes_by_id()
    duplicates = {i: n for i, n in runs.items() if n > 1 and i in set(ids)}
    print(f"\nno-lost-tasks: {N} tasks all SUCCESS in {time.monotonic() - t0:.1f}s; "
          f"{len(duplicates)} ran more than once ({sum(duplicates.values()) - len(duplicates)} extra runs)")
