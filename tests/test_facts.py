"""Every fact of the deployment has one owner, the model (deployment/): no copy of it elsewhere in the product.

The search covers every tracked product file (code, Compose files, Dockerfiles, shell scripts, configs;
not tests, not prose, not the committed examples, which the model renders and tests/test_model.py checks).
A few copies cannot be avoided, because a program that cannot import the model reads them (redis.conf,
a Dockerfile's EXPOSE, a shell script inside the Redis image, a Compose volume key). Each is listed in
ALLOWED with its reason, and is itself checked against the model, so it can never drift.
"""
import re
import subprocess

import pytest

from deployment import envs, naming, ports
from deployment.instance import COMPONENTS, IMAGE_REPO, ROOT

VISIBILITY = envs.TENANT["CELERY_VISIBILITY_TIMEOUT"].default
TIME_LIMIT = envs.TENANT["CELERY_TASK_TIME_LIMIT"].default
FACTS = {
    "redis-port": (re.compile(rf"\b{naming.REDIS_TLS_PORT}\b"), str(naming.REDIS_TLS_PORT)),
    "web-port": (re.compile(rf"\b{naming.WEB_CONTAINER_PORT}\b"), str(naming.WEB_CONTAINER_PORT)),
    "web-host-ports": (re.compile(rf"\b{ports.FIRST_WEB_BASE // 10}[1-9]\b"), None),  # 8001-8009
    "tools-port": (re.compile(rf"\b{ports.TOOLS_BASE}\b"), str(ports.TOOLS_BASE)),
    "prometheus-port": (re.compile(rf"\b{ports.PROMETHEUS_BASE}\b"), None),
    "alertmanager-port": (re.compile(rf"\b{ports.ALERTMANAGER_BASE}\b"), None),
    "monitoring-ports": (re.compile(rf"\b({naming.EXPORTER_CONTAINER_PORT}|{naming.RECEIVER_CONTAINER_PORT}|"
                                    rf"{naming.TENANT_METRICS_CONTAINER_PORT})\b"), None),
    "published-header": (re.compile(naming.PUBLISHED_HEADER), None),
    "placeholder": (re.compile(re.escape(envs.PLACEHOLDER)), envs.PLACEHOLDER),
    "image-names": (re.compile(rf"{IMAGE_REPO}/({'|'.join(COMPONENTS)})"), None),
    "redis-volume": (re.compile(rf"\b{naming.REDIS_DATA_VOLUME}\b"), naming.REDIS_DATA_VOLUME),
    # not the task names (tenant-add, tenant-migrate-db, tenant-remove), nor the bench section tenant-restore
    "tenant-prefix": (re.compile(r"[\"'`]tenant-(?!add|migrate-db|restore|remove)"), None),
    "visibility-default": (re.compile(rf"(?i)visibility.*\b{VISIBILITY}\b"), None),
    "time-limit-default": (re.compile(rf"(?i)time_limit\W{{0,5}}{TIME_LIMIT}\b"), None),
}

# (file, fact) -> why the copy must exist there. Its value is the model's (checked below).
ALLOWED = {
    ("redis/redis.conf", "redis-port"): "Redis reads its TLS port from its config file",
    ("redis/healthcheck.sh", "redis-port"): "runs inside the Redis image, which has no Python",
    ("redis/entrypoint.sh", "redis-port"): "runs inside the Redis image, which has no Python",
    ("redis/Dockerfile", "redis-port"): "EXPOSE documents the image's port",
    ("app/Dockerfile", "web-port"): "EXPOSE documents the image's port",
    ("tools/redis-commander/Dockerfile", "tools-port"): "EXPOSE documents the image's port",
    ("redis/entrypoint.sh", "placeholder"): "refuses an example password inside the Redis image, which has no Python",
    ("compose/compose.yaml", "redis-volume"): "Compose does not interpolate keys; volume names are keys",
}

PRODUCT_SUFFIXES = (".py", ".sh", ".yaml", ".yml", ".js", ".conf", ".toml", ".ini", ".json",
                    "Dockerfile", "invoke", "run")


def _product_files() -> list[str]:
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    return [f for f in files if f.endswith(PRODUCT_SUFFIXES) and not f.startswith(("deployment/", "tests/", "envs/"))
            and "node_modules" not in f and not f.endswith("package-lock.json")]


def _copies() -> dict[tuple[str, str], list[str]]:
    found = {}
    for f in _product_files():
        for n, line in enumerate((ROOT / f).read_text(errors="replace").splitlines(), 1):
            for fact, (pattern, _) in FACTS.items():
                if pattern.search(line):
                    found.setdefault((f, fact), []).append(f"{f}:{n}: {line.strip()}")
    return found


def test_no_fact_of_the_deployment_is_copied_outside_the_model():
    stray = [hit for key, hits in _copies().items() if key not in ALLOWED for hit in hits]
    assert _product_files() and not stray, "\n".join(stray)


@pytest.mark.parametrize("key", sorted(ALLOWED))
def test_each_allowed_copy_still_exists_and_equals_the_model(key):
    path, fact = key
    pattern, value = FACTS[fact]
    hits = _copies().get(key)
    assert hits, f"{path} no longer holds {fact}: remove it from ALLOWED"
    assert value and all(value in hit for hit in hits), hits


def test_the_search_finds_a_planted_copy(tmp_path):
    """The facts test itself can fail: a copy of the Redis port in a new ops module is found."""
    line = f"REDIS = ('127.0.0.1', {naming.REDIS_TLS_PORT})"
    assert FACTS["redis-port"][0].search(line) and FACTS["tenant-prefix"][0].search("x = 'tenant-' + name")
    assert not FACTS["tenant-prefix"][0].search("tenant-add")
