"""The provisioned engine runs real Compose: build from debian:trixie-slim, healthchecks, depends_on."""
import json
import os
import subprocess
import textwrap
from datetime import datetime

from ops.config.paths import INSTANCE
from ops.engine import provision as engine
from ops.engine.provision import COMPOSE_ENV

SMOKE = f"{INSTANCE.name}-smoke"  # a project of its own, named after the test instance
SMOKE_IMAGE = f"{SMOKE}:local"


def _ts(value: str) -> datetime:
    # RFC3339 with up to nanoseconds; keep microseconds for fromisoformat.
    value = value.replace("Z", "+00:00")
    if "." in value:
        head, rest = value.split(".", 1)
        frac, _, tz = rest.partition("+") if "+" in rest else rest.partition("-")
        value = f"{head}.{frac[:6]}{('+' if '+' in rest else '-') + tz if tz else ''}"
    return datetime.fromisoformat(value)


def test_dependent_starts_only_after_the_healthcheck_turned_healthy(tmp_path):
    engine.ensure()
    (tmp_path / "Dockerfile").write_text("FROM debian:trixie-slim\nRUN echo built > /built\n")
    (tmp_path / "compose.yaml").write_text(textwrap.dedent("""\
        services:
          first:
            build: {context: ., network: host}
            image: {SMOKE_IMAGE}
            init: true
            command: ["sh", "-c", "sleep 4; touch /tmp/ready; exec sleep 600"]
            healthcheck: {test: ["CMD", "test", "-f", "/tmp/ready"], interval: 1s, timeout: 3s, retries: 30}
          second:
            build: {context: ., network: host}
            image: {SMOKE_IMAGE}
            init: true
            command: ["sleep", "600"]
            depends_on: {first: {condition: service_healthy}}
        """).replace("{SMOKE_IMAGE}", SMOKE_IMAGE))
    env = {**os.environ, **COMPOSE_ENV}
    base = [*engine.compose_argv(), "--project-name", SMOKE, "--project-directory", str(tmp_path)]
    try:
        up = subprocess.run([*base, "up", "--detach", "--build", "--wait", "--wait-timeout", "120"], env=env,
                            capture_output=True, text=True, timeout=300)
        assert up.returncode == 0, up.stderr[-2000:]
        first, second = (json.loads(subprocess.run(["docker", "inspect", f"{SMOKE}-{n}-1"],
                                                   capture_output=True, text=True, check=True).stdout)[0]
                         for n in ("first", "second"))
        passes = [_ts(h["End"]) for h in first["State"]["Health"]["Log"] if h["ExitCode"] == 0]
        assert first["State"]["Health"]["Status"] == "healthy" and passes
        started_first, started_second = _ts(first["State"]["StartedAt"]), _ts(second["State"]["StartedAt"])
        assert (min(passes) - started_first).total_seconds() >= 3.5  # it really waited for /tmp/ready
        assert started_second >= min(passes), (started_second, min(passes))
        built = subprocess.run(["docker", "exec", f"{SMOKE}-second-1", "cat", "/built", "/etc/debian_version"],
                               capture_output=True, text=True)
        assert built.stdout.startswith("built\n13.")
    finally:
        subprocess.run([*base, "down", "--volumes", "--rmi", "all"], env=env, capture_output=True, timeout=120)
        subprocess.run(["docker", "rmi", "-f", SMOKE_IMAGE], capture_output=True)


def test_docker_cli_and_compose_v2_answer():
    assert subprocess.run(["docker", "info"], capture_output=True).returncode == 0
    version = subprocess.run([*engine.compose_argv(), "version", "--short"], capture_output=True, text=True)
    assert version.stdout.strip().lstrip("v").startswith("2.")
