"""A real server, TLS-only, running the project's real redis.conf, for fast tests.

The server is the instance's own server image's valkey-server (Valkey 8.1, Debian 13's build), run as a
host process from the image's exported filesystem (tests/support/image_rootfs.py): what ships, not the
host's Redis. The config is the committed redis/redis.conf with only its container paths rewritten to a temp
folder; the ACL users and renamed commands come from the same renderer `./invoke init` uses, and the
committed redis/healthcheck.sh (paths rewritten the same way) loads kombu's scripts before any test runs.
"""
import os
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis
from deployment import acl, envs, lua, naming
from ops.config.paths import REDIS_CONF, ROOT
from ops.secrets import generate as ops_secrets
from ops.secrets import tls
from tests.support import image_rootfs

TENANTS = ("a", "b")


@dataclass
class LocalRedis:
    host: str
    port: int
    dir: Path
    ca: Path
    redis_env: dict
    tenant_passwords: dict
    process: subprocess.Popen = field(repr=False)
    argv: list = field(default_factory=list, repr=False)  # how it was started: restart() runs it again

    def cert(self, cn: str) -> tuple[Path, Path]:
        """Client certificate and key: cn is 'client' (operator), 'tenant-a', 'tenant-b' or 'commander'."""
        return self.dir / "tls" / f"{cn}.crt", self.dir / "tls" / f"{cn}.key"

    def tenant_env(self, tenant: str) -> dict[str, str]:
        """Environment for running the app as `tenant` against this server."""
        crt, key = self.cert(naming.redis_user(tenant))
        return {"TENANT": tenant, "REDIS_PASSWORD": self.tenant_passwords[tenant], "REDIS_HOST": self.host,
                "REDIS_PORT": str(self.port), "TLS_CA_FILE": str(self.ca), "TLS_CERT_FILE": str(crt),
                "TLS_KEY_FILE": str(key)}

    def client(self, user: str | None = None, password: str | None = None, cert: str = "client", **kw) -> redis.Redis:
        """A redis-py client over verified TLS; defaults to the operator (default user)."""
        crt, key = self.cert(cert)
        if user is None and password is None:
            password = self.redis_env["REDIS_PASSWORD"]
        kw.setdefault("socket_timeout", 5)
        return redis.Redis(host=self.host, port=self.port, username=user, password=password, ssl=True,
                           ssl_ca_certs=str(self.ca), ssl_certfile=str(crt), ssl_keyfile=str(key),
                           ssl_cert_reqs="required", **kw)

    def healthcheck(self) -> subprocess.CompletedProcess:
        """Run the container's real healthcheck (redis/healthcheck.sh) against this server."""
        path = f"{self.dir / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}"  # the image's valkey-cli
        return subprocess.run(["sh", str(self.dir / "healthcheck.sh")], capture_output=True, text=True, timeout=30,
                              env={**os.environ, "PATH": path})

    def run_id(self) -> str:
        return self.client().info("server")["run_id"]

    def tenant_client(self, tenant: str, **kw) -> redis.Redis:
        user = naming.redis_user(tenant)
        return self.client(user, self.tenant_passwords[tenant], cert=user, **kw)

    def crash(self) -> None:
        """kill -9: no final AOF fsync, no goodbye to the clients (what a dead host or an OOM kill does)."""
        self.process.kill()
        self.process.wait(10)

    def restart(self, timeout: float = 15) -> None:
        """Start it again on the same port with the same data (its AOF), as redis/entrypoint.sh does.

        The entrypoint listens on loopback only until the healthcheck has loaded kombu's scripts (tenants
        may EVALSHA but never SCRIPT LOAD them), then binds what redis.conf says. Here the server listens on
        127.0.0.2 until then and moves to 127.0.0.1 (where the clients connect), for the same reason."""
        log = open(self.dir / "redis.log", "ab")  # noqa: SIM115 - the server's stdout for its whole life
        self.process = subprocess.Popen([*self.argv, "--bind", "127.0.0.2"], stdout=log, stderr=subprocess.STDOUT)
        hidden = self.dir / "healthcheck-hidden.sh"
        hidden.write_text((self.dir / "healthcheck.sh").read_text().replace(" -h 127.0.0.1 ", " -h 127.0.0.2 "))
        path = f"{self.dir / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}"
        deadline = time.monotonic() + timeout
        while subprocess.run(["sh", str(hidden)], capture_output=True, timeout=30,
                             env={**os.environ, "PATH": path}).returncode != 0:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"valkey-server did not come back: {(self.dir / 'redis.log').read_text()[-2000:]}")
            time.sleep(0.05)
        config = next(line.split()[2] for line in (self.dir / "redis" / "auth.conf").read_text().splitlines()
                      if line.startswith("rename-command CONFIG "))
        with redis.Redis(host="127.0.0.2", port=self.port, password=self.redis_env["REDIS_PASSWORD"], ssl=True,
                         ssl_ca_certs=str(self.ca), ssl_certfile=str(self.cert("client")[0]),
                         ssl_keyfile=str(self.cert("client")[1]), ssl_check_hostname=False,
                         ssl_cert_reqs="required", socket_timeout=5) as hidden_client:
            hidden_client.execute_command(config, "SET", "bind", self.host)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_secrets(root: Path, tenants=TENANTS, redis_settings: dict | None = None) -> tuple[dict, dict]:
    (root / "tls").mkdir(parents=True)
    ca_crt, ca_key = root / "tls" / "ca.crt", root / "tls" / "ca.key"
    tls.make_ca(ca_crt, ca_key)
    for cn, server in ops_secrets.certificate_names(tenants).items():
        tls.make_leaf(ca_crt, ca_key, root / "tls" / f"{cn}.crt", root / "tls" / f"{cn}.key", cn, server=server)
    redis_env = {**envs.redis_values(secret=ops_secrets.generate), **(redis_settings or {})}
    passwords = {t: secrets.token_urlsafe(32) for t in tenants}
    return redis_env, passwords


def render_conf(root: Path, port: int) -> Path:
    text = REDIS_CONF.read_text()
    text = text.replace("/run/secrets/tls/server.", f"{root}/tls/redis.").replace("/run/secrets/tls/", f"{root}/tls/")
    text = text.replace("/run/secrets/redis/", f"{root}/redis/").replace("\ndir /data\n", f"\ndir {root}/data\n")
    text = text.replace(f"\ntls-port {naming.REDIS_TLS_PORT}\n", f"\ntls-port {port}\n")
    text = text.replace("\nbind 0.0.0.0\n", "\nbind 127.0.0.1\n")
    conf = root / "redis.conf"
    conf.write_text(text)
    return conf


def render_healthcheck(root: Path, port: int) -> Path:
    text = (ROOT / "redis" / "healthcheck.sh").read_text()
    text = text.replace("/run/secrets/tls/server.", f"{root}/tls/redis.").replace("/run/secrets/tls/", f"{root}/tls/")
    text = text.replace("/run/secrets/redis", f"{root}/redis").replace(f" -p {naming.REDIS_TLS_PORT} ", f" -p {port} ")
    path = root / "healthcheck.sh"
    path.write_text(text)
    return path


def start(root: Path, tenants=TENANTS, run_as: str | None = None, tenant_settings: dict | None = None,
          redis_settings: dict | None = None) -> LocalRedis:
    """Start the server image's valkey-server on a free port; run_as='nobody' drops root so file permissions bite.

    tenant_settings: tenant -> extra env-file values that shape its ACL rule (e.g. CELERY_BROADCAST_QUEUES);
    redis_settings: envs/redis.env values other than the table's defaults (e.g. REDIS_MAXMEMORY_MB)."""
    redis_env, passwords = make_secrets(root, tenants, redis_settings)
    (root / "redis").mkdir()
    (root / "data").mkdir()
    settings = {t: {**(tenant_settings or {}).get(t, {}), "REDIS_PASSWORD": pw} for t, pw in passwords.items()}
    (root / "redis" / "auth.conf").write_text(acl.auth_conf(redis_env, settings))
    (root / "redis" / "health.pass").write_text(redis_env["REDIS_HEALTH_PASSWORD"] + "\n")
    scripts = lua.loaded_scripts()
    (root / "redis" / lua.LOAD_FILE).write_text(lua.load_commands(scripts))
    (root / "redis" / lua.EXPECT_FILE).write_text(lua.load_expectation(scripts))
    port = free_port()
    conf = render_conf(root, port)
    render_healthcheck(root, port)
    log = open(root / "redis.log", "wb")  # noqa: SIM115 - the server's stdout for its whole life
    image_rootfs.bin_dir("redis", ["valkey-cli"], root / "bin")
    argv = [*image_rootfs.argv("redis", "valkey-server"), str(conf)]
    if run_as:
        shutil.chown(root / "data", run_as)
        for f in [root, *root.rglob("*")]:
            f.chmod(f.stat().st_mode | 0o755 if f.is_dir() else f.stat().st_mode | 0o644)
        argv = ["setpriv", f"--reuid={run_as}", f"--regid={run_as if run_as != 'nobody' else 'nogroup'}",
                "--clear-groups", *argv]
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    server = LocalRedis("127.0.0.1", port, root, root / "tls" / "ca.crt", redis_env, passwords, proc, argv)
    deadline = time.monotonic() + 15
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"valkey-server exited: {(root / 'redis.log').read_text()[-2000:]}")
        try:
            server.client().ping()
            checked = server.healthcheck()  # as in the container: loads kombu's scripts
            if checked.returncode != 0:
                server.stop()
                raise RuntimeError(f"redis healthcheck failed: {checked.stderr.strip()}")
            return server
        except (redis.ConnectionError, OSError):
            if time.monotonic() > deadline:
                server.stop()
                raise
            time.sleep(0.1)
