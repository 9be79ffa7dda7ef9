"""The previous release, laid out from git and run the way its operators run it, on a throwaway instance.

tests/containers/test_upgrade.py uses it: `git archive <commit>` into a folder of its own (the checkout an
operator of that release has), that release's own ./invoke run there on an instance of its own, then the
folder's tracked files replaced by today's work tree (what `git pull` does to a checkout: the old release's
tracked files go, today's come, ignored files such as instances/<name>/ and .venv stay), and today's
./invoke run in the same folder on the same instance.

The instance is a throwaway one in the suite's sense (deployment/ports.py THROWAWAY_VAR: the registry records
the owner's pid), owned by the same process as the suite's own instance, so a run killed outright is swept by
the next `./invoke test` like the suite's instance. Its name is the suite's instance name plus `-upg`, so it
is never the default instance nor the suite's, and `./invoke instances` shows whose it is. The test puts the
folder in the suite instance's home (instances/test-<hex>/), so that instance's removal deletes it too.
"""
import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import redis
from deployment import naming, ports
from deployment.instance import DEFAULT, INSTANCE_VAR, Instance
from ops.config.envfile import read_env
from ops.config.paths import INSTANCE as SUITE_INSTANCE
from ops.config.paths import ROOT

PREVIOUS_RELEASE = "54030d09c4d244682103005901fe891c84f8ddb7"  # Redis 7.0, Debian 12, Python 3.11
VENV_STAMP = ".requirements.sha256"  # ./invoke's stamp in .venv: sha256 of requirements/*.txt


def _git(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, timeout=120)


def missing_commit(commit: str = PREVIOUS_RELEASE) -> str | None:
    """One line when the commit is not in this clone's history (a shallow clone, say); None when it is."""
    if _git("merge-base", "--is-ancestor", commit, "HEAD").returncode == 0:
        return None
    return (f"the previous release {commit[:7]} is not in the history of the clone at {ROOT} "
            f"(shallow clone?): run `git fetch --unshallow` (or fetch {commit[:7]}) and retry")


def requirements_hash(root: Path) -> str:
    """What ./invoke compares with .venv's stamp: sha256 of requirements/*.txt concatenated in name order."""
    h = hashlib.sha256()
    for path in sorted((root / "requirements").glob("*.txt")):
        h.update(path.read_bytes())
    return h.hexdigest()


def link_venv(root: Path) -> bool:
    """Make root/.venv this checkout's .venv when requirements are the same (./invoke then installs nothing).

    Otherwise leave root/.venv alone: that release's ./invoke makes its own (never touching ours)."""
    ours = ROOT / ".venv"
    stamp = ours / VENV_STAMP
    if not stamp.exists() or stamp.read_text().strip() != requirements_hash(root):
        return False
    venv = root / ".venv"
    if venv.is_symlink() or venv.is_file():
        venv.unlink()
    elif venv.is_dir():
        shutil.rmtree(venv)
    venv.symlink_to(ours)
    return True


def lay_out(dest: Path, commit: str = PREVIOUS_RELEASE) -> None:
    """The release's tracked files, as `git archive` has them, in dest."""
    dest.mkdir(parents=True)
    archive = subprocess.Popen(["git", "archive", "--format=tar", commit], cwd=ROOT, stdout=subprocess.PIPE)
    untar = subprocess.run(["tar", "-x", "-C", str(dest)], stdin=archive.stdout, capture_output=True, timeout=300)
    archive.stdout.close()
    if archive.wait(timeout=300) or untar.returncode:
        raise AssertionError(f"git archive {commit[:7]} | tar -x -C {dest} failed: {untar.stderr.decode()[-500:]}")


def _z(proc: subprocess.CompletedProcess) -> list[str]:
    assert proc.returncode == 0, proc.stderr.decode()
    return [p for p in proc.stdout.decode().split("\0") if p]


def pull_work_tree(dest: Path, commit: str = PREVIOUS_RELEASE) -> int:
    """Replace dest's tracked files (the commit's) with this checkout's work tree, as a `git pull` would.

    The commit's tracked files are removed (and folders left empty by that), then every file
    `git ls-files -co --exclude-standard` lists here is copied as it is in the work tree (modes and
    symlinks kept). Ignored and untracked files of dest (instances/, .venv, __pycache__) stay. Returns
    how many files were copied."""
    for rel in _z(_git("ls-tree", "-r", "-z", "--name-only", commit)):
        path = dest / rel
        if path.is_symlink() or path.is_file():
            path.unlink()
        parent = path.parent
        while parent != dest:
            try:
                parent.rmdir()  # only when empty
            except OSError:
                break
            parent = parent.parent
    copied = 0
    for rel in _z(_git("ls-files", "-co", "--exclude-standard", "-z")):
        src = ROOT / rel
        if not os.path.lexists(src):  # in the index, deleted in the work tree
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink() or target.is_file():
            target.unlink()
        shutil.copy2(src, target, follow_symlinks=False)
        copied += 1
    return copied


class Deployment:
    """One instance run from the checkout at `root`, seen as its operator sees it (host ports, env files, TLS)."""

    def __init__(self, root: Path, name: str, owner: str):
        if name in (DEFAULT, SUITE_INSTANCE.name):
            raise AssertionError(f"refusing instance {name}: never the default instance nor the suite's own")
        self.root, self.name, self.owner = root, name, owner
        self.model = Instance(name, root=root)  # today's model; the previous release's lays instances out alike
        self.outputs: list[str] = []  # every ./invoke call and what it said, for the failure report
        self.old_images: dict[str, str] = {}  # component -> image id the previous release built (untagged later)

    # ---- ./invoke ----------------------------------------------------------------------------------------
    def env(self) -> dict:
        env = {**os.environ, INSTANCE_VAR: self.name, ports.THROWAWAY_VAR: self.owner}
        env.pop("COMPOSE_PROJECT_NAME", None)
        env.pop("PYTHONPATH", None)  # the checkout's own modules, never this one's
        return env

    def invoke(self, *args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
        t0 = time.monotonic()
        proc = subprocess.run([str(self.root / "invoke"), *args], cwd=self.root, env=self.env(), capture_output=True,
                              text=True, timeout=timeout)
        self.outputs.append(f"$ ./invoke {' '.join(args)}   # exit {proc.returncode} in {time.monotonic() - t0:.0f}s\n"
                            f"{proc.stdout}{proc.stderr}")
        if check and proc.returncode != 0:
            raise AssertionError(f"{self.root}/invoke {' '.join(args)} (instance {self.name}) exited "
                                 f"{proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return proc

    # ---- facts of the instance -----------------------------------------------------------------------------
    def container(self, service: str) -> str:
        return self.model.container(service)

    def tenant_env_path(self, tenant: str) -> Path:
        return self.model.envs / naming.env_file_name(tenant)

    def set_tenant_settings(self, tenant: str, **values: str) -> None:
        """Change settings of a tenant's env file as its operator would (lines replaced or appended)."""
        path = self.tenant_env_path(tenant)
        lines = [line for line in path.read_text().splitlines() if line.split("=", 1)[0] not in values]
        path.write_text("\n".join([*lines, *(f"{k}={v}" for k, v in values.items())]) + "\n")

    def web_url(self, tenant: str, path: str) -> str:
        return f"http://127.0.0.1:{read_env(self.tenant_env_path(tenant))['WEB_PORT']}{path}"

    def client(self, **kw) -> redis.Redis:
        """The operator's TLS client to this instance's server, from this instance's own files."""
        tls = self.model.tls
        kw = {"socket_timeout": 30, "socket_connect_timeout": 5, **kw}
        return redis.Redis(host="127.0.0.1", port=self.model.redis_port,
                           password=read_env(self.model.redis_env)["REDIS_PASSWORD"], ssl=True,
                           ssl_ca_certs=str(tls / "ca.crt"), ssl_cert_reqs="required",
                           ssl_certfile=str(tls / "client.crt"), ssl_keyfile=str(tls / "client.key"), **kw)

    # ---- the tenants' web API (README: the web API) ------------------------------------------------------------
    def http(self, method: str, tenant: str, path: str, body=None) -> tuple[int, dict]:
        from tests.support.deployment import http

        return http(method, self.web_url(tenant, path), None if body is None else json.dumps(body).encode())

    def post_echo(self, tenant: str, value) -> str:
        status, body = self.http("POST", tenant, "/api/tasks/echo", {"value": value})
        assert status == 202, (tenant, status, body)
        return body["id"]

    def task(self, tenant: str, task_id: str) -> tuple[int, dict]:
        return self.http("GET", tenant, f"/api/tasks/{task_id}")

    def wait_for_tasks(self, tenant: str, ids, states=("SUCCESS",), timeout: float = 180) -> dict:
        """Poll the tenant's API until every id is in one of `states`: id -> its body."""
        from tests.support.deployment import poll_results

        done, pending = poll_results(lambda task_id: self.task(tenant, task_id), ids, timeout, states)
        if pending:
            total = len(done) + len(pending)
            raise AssertionError(f"tenant {tenant} (instance {self.name}): {len(pending)} of {total} "
                                 f"tasks not in {'/'.join(states)} after {timeout:.0f}s, e.g. {sorted(pending)[:2]}")
        return done

    # ---- the engine ------------------------------------------------------------------------------------------
    def docker(self, *argv: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        proc = subprocess.run(["docker", *argv], capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"docker {' '.join(argv[:3])} failed (exit {proc.returncode}): {proc.stderr[-1000:]}")
        return proc

    def exec_python(self, service: str, code: str, *args: str) -> str:
        """Run code with the image's own Python in a running container of the instance; its stdout."""
        return self.docker("exec", self.container(service), "python", "-c", code, *args).stdout

    def image_ids(self, *components: str) -> dict[str, str]:
        """component -> the id of the image the instance's tag names now."""
        return {comp: self.docker("image", "inspect", "--format", "{{.Id}}", self.model.image(comp)).stdout.strip()
                for comp in components}

    def remove_images(self, ids: dict[str, str]) -> None:
        """Remove images by id (once today's build took their tags they are nobody's); one still in use stays."""
        for image in ids.values():
            self.docker("rmi", image, check=False)

    def logs(self, service: str) -> str:
        proc = self.docker("logs", self.container(service), check=False)
        return proc.stdout + proc.stderr

    def stop_timeout(self, service: str) -> str:
        """The seconds the engine gives the container between SIGTERM and SIGKILL when it is stopped."""
        return self.docker("inspect", "--format", "{{.Config.StopTimeout}}", self.container(service)).stdout.strip()

    def running(self, service: str) -> bool:
        proc = self.docker("inspect", "--format", "{{.State.Running}}", self.container(service), check=False)
        return proc.stdout.strip() == "true"
