"""Run the app's real processes (manage.py, celery worker/beat, gunicorn) as subprocesses for tests."""
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

APP_DIR = Path(__file__).resolve().parents[2] / "app"  # the glue package (tenantstack) lives here
PROJECT_DIR = APP_DIR / "example"  # the example project: /srv/app in its image, the processes' working directory


def tenant_env(local_redis, tenant: str, data_dir: Path, **overrides) -> dict[str, str]:
    """A complete, valid environment for `tenant` against the test Redis (nothing inherited but PATH)."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        # As in the image (PYTHONPATH=/opt/tenantstack:/srv/app): the glue and the model first, then the project.
        "PYTHONPATH": os.pathsep.join([str(APP_DIR), str(APP_DIR.parent), str(PROJECT_DIR)]),
        "DJANGO_SETTINGS_MODULE": "tenantstack.settings",
        "PYTHONDONTWRITEBYTECODE": "1",
        "LANG": "C.UTF-8",
        **local_redis.tenant_env(tenant),
        "DATA_DIR": str(data_dir),
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(40),
        "DJANGO_ADMIN_PASSWORD": secrets.token_urlsafe(16),
        "DATABASE_PASSWORD": secrets.token_urlsafe(24),  # a secret row of every tenant (used with DATABASE=postgres)
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
        "CELERY_TASK_TIME_LIMIT": "60",
        "CELERY_VISIBILITY_TIMEOUT": "3600",
        "CELERY_WORKER_CONCURRENCY": "2",
    }
    env.update(overrides)
    return {k: v for k, v in env.items() if v is not None}


def run(args: list[str], env: dict, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], env=env, cwd=PROJECT_DIR, capture_output=True, text=True,
                          timeout=timeout, **kw)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


class AppProcess:
    """A long-running app process (worker, beat, gunicorn) whose output goes to a log file."""

    def __init__(self, args: list[str], env: dict, log: Path, node: str | None = None):
        self.node = node  # a worker's node name
        self.log = log
        self._log_fh = open(log, "wb")  # noqa: SIM115 - lives as long as the process; closed in stop()
        self.proc = subprocess.Popen([sys.executable, *args], env=env, cwd=PROJECT_DIR, stdout=self._log_fh,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_for_output(self, text: str, timeout: float = 30) -> None:
        def seen():
            if not self.alive() and text not in self.output():
                raise AssertionError(f"process exited ({self.proc.returncode}) before printing {text!r}:\n"
                                     f"{self.output()[-3000:]}")
            return text in self.output()

        wait_for(seen, timeout, f"{text!r} in {self.log}")

    def stop(self, timeout: float = 20) -> None:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._log_fh.close()


def start_worker(env: dict, log: Path, node: str, concurrency: int = 2) -> AppProcess:
    """A real prefork worker consuming only the tenant's queue, as the entrypoint starts it."""
    from deployment import naming

    queue = naming.queue_name(env["TENANT"])
    worker = AppProcess(["-m", "celery", "-A", "tenantstack.celery", "worker", "--queues", queue, "--hostname", node,
                         "--concurrency", str(concurrency), "--loglevel", "INFO"], env, log, node=node)
    worker.wait_for_output(f"{node} ready.", timeout=60)
    return worker


def start_gunicorn(env: dict, log: Path, port: int) -> AppProcess:
    web = AppProcess(["-m", "gunicorn", "--config", "python:tenantstack.gunicorn_conf", "--bind", f"127.0.0.1:{port}",
                      "--workers", "1"], env, log)
    web.wait_for_output("Booting worker", timeout=30)
    return web
