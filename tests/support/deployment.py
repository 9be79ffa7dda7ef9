"""Access to the test instance's real deployment (containers started by ./invoke up) from tests."""
import json
import subprocess
from pathlib import Path

import redis
from deployment import naming
from ops.config.envfile import read_env
from ops.config.paths import INSTANCE, REDIS_ENV, ROOT, TLS
from ops.config.tenants import env_path
from ops.deploy import compose

INVOKE = str(ROOT / "invoke")


def invoke(*args: str, check: bool = True, timeout: float = 900,
           input: str | None = None) -> subprocess.CompletedProcess:
    """Run ./invoke like an operator would, capturing its output."""
    proc = subprocess.run([INVOKE, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, input=input)
    if check and proc.returncode != 0:
        raise AssertionError(f"./invoke {' '.join(args)} exited {proc.returncode}:\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def container(service: str) -> str:
    return INSTANCE.container(service)


def inspect(name: str) -> dict:
    out = subprocess.run(["docker", "inspect", name], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)[0]


def redis_env() -> dict:
    return read_env(REDIS_ENV)


def tenant_password(tenant: str) -> str:
    return read_env(env_path(tenant))["REDIS_PASSWORD"]


def client(user=None, password=None, cert: str | None = "client", ca: Path = TLS / "ca.crt", **kw) -> redis.Redis:
    """A TLS client to the instance's Redis on 127.0.0.1 (operator by default)."""
    if user is None and password is None:
        password = redis_env()["REDIS_PASSWORD"]
    tls = dict(ssl=True, ssl_ca_certs=str(ca), ssl_cert_reqs="required")
    if cert:
        tls.update(ssl_certfile=str(TLS / f"{cert}.crt"), ssl_keyfile=str(TLS / f"{cert}.key"))
    kw = {"socket_timeout": 10, "socket_connect_timeout": 5, **kw}  # callers may shorten the time-outs
    return redis.Redis(host="127.0.0.1", port=INSTANCE.redis_port, username=user, password=password, **tls, **kw)


def tenant_client(tenant: str, **kw) -> redis.Redis:
    return client(naming.redis_user(tenant), tenant_password(tenant), cert=naming.redis_user(tenant), **kw)


def compose_run(*args: str, **kw) -> subprocess.CompletedProcess:
    return compose.run(*args, profiles=compose.all_profiles(), quiet=True, capture=True, **kw)


def web_url(tenant: str, path: str) -> str:
    from ops.config.tenants import web_port_of

    return f"http://127.0.0.1:{web_port_of(tenant)}{path}"


def http(method: str, url: str, body: bytes | None = None, timeout: float = 10) -> tuple[int, dict]:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def post_echo(tenant: str, value) -> str:
    status, body = http("POST", web_url(tenant, "/api/tasks/echo"), json.dumps({"value": value}).encode())
    assert status == 202, (status, body)
    return body["id"]


def task_status(tenant: str, task_id: str) -> tuple[int, dict]:
    return http("GET", web_url(tenant, f"/api/tasks/{task_id}"))


def poll_results(status, ids, timeout: float, states=("SUCCESS",)) -> tuple[dict, set]:
    """Poll status(task_id) -> (HTTP code, body) until every id reached one of `states` or `timeout` passed.

    Returns (id -> body of those that did, the ids still pending): callers that count losses read both."""
    import time

    pending, done = set(ids), {}
    deadline = time.monotonic() + timeout
    while pending:
        for task_id in list(pending):
            code, body = status(task_id)
            if code == 200 and body["status"] in states:
                done[task_id] = body
                pending.discard(task_id)
        if pending:
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
    return done, pending


def wait_for_results(tenant: str, ids, timeout: float = 120, states=("SUCCESS",)) -> dict:
    """Poll the tenant's API until every id reached one of `states`; returns id -> body."""
    done, pending = poll_results(lambda task_id: task_status(tenant, task_id), ids, timeout, states)
    if pending:
        raise AssertionError(f"{len(pending)} of {len(done) + len(pending)} tasks of tenant {tenant} "
                             f"not in {states} after {timeout}s, e.g. {sorted(pending)[:3]}")
    return done


def hostname(service: str) -> str:
    return inspect(container(service))["Config"]["Hostname"]


def inspect_running(service: str) -> bool:
    out = subprocess.run(["docker", "inspect", "-f", "{{.State.Running}}", container(service)],
                         capture_output=True, text=True)
    return out.returncode == 0 and out.stdout.strip() == "true"
