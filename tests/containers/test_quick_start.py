"""The README's first command, exactly as written, in a fresh clone with no env files and no secrets.

It runs on a throwaway instance of its own (TENANTSTACK_INSTANCE), so it never meets the operator's
deployment nor the suite's; the instance is removed afterwards, whatever happened.
"""
import os
import re
import subprocess

import pytest

from deployment import ports
from deployment.instance import INSTANCE_VAR
from ops.config.paths import INSTANCE, ROOT
from ops.deploy import instances
from tests.support import deployment as d

README_UP = "./invoke up --tenant a"


def test_the_readme_quick_start_names_exactly_this_command():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## Quick start.*?```sh\n(.*?)```", readme, re.S).group(1)
    assert block.strip().splitlines() == [README_UP, "./invoke test"]


@pytest.fixture
def fresh_clone(tmp_path):
    clone = tmp_path / "fresh"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, capture_output=True)
    name = f"{INSTANCE.name}-qs"
    yield clone, name
    instances.remove(name, log=lambda m: None)


def test_readme_up_works_on_a_fresh_clone(fresh_clone):
    clone, name = fresh_clone
    assert not list((clone / "envs").glob("*.env")) and not (clone / "secrets").exists()
    env = {**os.environ, INSTANCE_VAR: name, ports.THROWAWAY_VAR: str(os.getpid())}
    proc = subprocess.run(README_UP.split(), cwd=clone, env=env, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    url = re.search(r"up: tenant a: (http://127\.0\.0\.1:\d+)/healthz", proc.stdout).group(1)
    low, high = ports.block_range(ports.entries()[name]["block"])
    assert low <= int(url.rsplit(":", 1)[1]) <= high
    assert d.http("GET", f"{url}/healthz") == (200, {"tenant": "a", "database": "ok", "broker": "ok"})
    assert (clone / "instances" / name / "envs" / "tenant-a.env").exists()
