"""A real redis-server (Debian's, TLS-only) running the project's real redis.conf, for fast tests.

The config is the committed redis/redis.conf with only its container paths rewritten to a temp
folder; the ACL users and renamed commands come from the same renderer `./invoke init` uses.
"""
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis
from deployment import acl, envs, naming
from ops.config.paths import REDIS_CONF
from ops.secrets import generate as ops_secrets
from ops.secrets import tls

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
        return redis.Redis(host=self.host, port=self.port, username=user, password=password, ssl=True,
                           ssl_ca_certs=str(self.ca), ssl_certfile=str(crt), ssl_keyfile=str(key),
                           ssl_cert_reqs="required", socket_timeout=5, **kw)

    def tenant_client(self, tenant: str, **kw) -> redis.Redis:
        user = naming.redis_user(tenant)
        return self.client(user, self.tenant_passwords[tenant], cert=user, **kw)

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


def make_secrets(root: Path, tenants=TENANTS) -> tuple[dict, dict]:
    (root / "tls").mkdir(parents=True)
    ca_crt, ca_key = root / "tls" / "ca.crt", root / "tls" / "ca.key"
    tls.make_ca(ca_crt, ca_key)
    for cn, server in ops_secrets.certificate_names(tenants).items():
        tls.make_leaf(ca_crt, ca_key, root / "tls" / f"{cn}.crt", root / "tls" / f"{cn}.key", cn, server=server)
    redis_env = envs.redis_values(secret=ops_secrets.generate)
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


def start(root: Path, tenants=TENANTS, run_as: str | None = None) -> LocalRedis:
    """Start redis-server on a free port; run_as='nobody' drops root so file permissions bite."""
    if not shutil.which("redis-server"):
        raise RuntimeError("redis-server is not installed: apt-get install redis-server (the test setup does this)")
    redis_env, passwords = make_secrets(root, tenants)
    (root / "redis").mkdir()
    (root / "data").mkdir()
    (root / "redis" / "auth.conf").write_text(acl.auth_conf(redis_env, passwords))
    port = free_port()
    conf = render_conf(root, port)
    log = open(root / "redis.log", "wb")  # noqa: SIM115 - the server's stdout for its whole life
    argv = ["redis-server", str(conf)]
    if run_as:
        shutil.chown(root / "data", run_as)
        for f in [root, *root.rglob("*")]:
            f.chmod(f.stat().st_mode | 0o755 if f.is_dir() else f.stat().st_mode | 0o644)
        argv = ["setpriv", f"--reuid={run_as}", f"--regid={run_as if run_as != 'nobody' else 'nogroup'}",
                "--clear-groups", *argv]
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    server = LocalRedis("127.0.0.1", port, root, root / "tls" / "ca.crt", redis_env, passwords, proc)
    deadline = time.monotonic() + 15
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited: {(root / 'redis.log').read_text()[-2000:]}")
        try:
            server.client().ping()
            return server
        except (redis.ConnectionError, OSError):
            if time.monotonic() > deadline:
                server.stop()
                raise
            time.sleep(0.1)
