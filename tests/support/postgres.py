"""Access to the test instance's PostgreSQL from tests: the superuser over the server's own socket, and clients that
connect like a tenant would (from a container on a tenant's network, TLS verified), to try what tenants may not."""
import os
import subprocess
import tempfile
import uuid
from pathlib import Path

from deployment import naming
from deployment.instance import UIDS
from ops.config.envfile import read_env
from ops.config.paths import INSTANCE, TLS
from ops.config.tenants import env_path
from tests.support import deployment as d

SERVER = INSTANCE.container(naming.POSTGRES_SERVICE)
IMAGE = INSTANCE.image("postgres")


def superuser(sql: str, db: str = naming.POSTGRES_MAINTENANCE_DB, check: bool = True) -> str:
    """Run `sql` as the bootstrap superuser over the server container's socket; its unaligned output."""
    proc = subprocess.run(["docker", "exec", "-i", SERVER, "psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
                           "-h", "/tmp", "-U", "postgres", "-d", db], input=sql, capture_output=True, text=True,
                          timeout=120)
    if check and (proc.returncode != 0 or "ERROR:" in proc.stderr):
        raise AssertionError(f"psql as the superuser on {db} failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


def tenant_password(tenant: str) -> str:
    return read_env(env_path(tenant))["DATABASE_PASSWORD"]


def client(network: str, user: str, password: str | None, db: str, sql: str, *, sslmode: str = "verify-full",
           host: str = naming.POSTGRES_SERVICE) -> tuple[int, str, str]:
    """psql from a throwaway container of the server's image on `network` (short name), like a tenant's process
    connects: the deployment's CA mounted, the password in a mounted passfile (never argv or the environment).
    Returns (exit code, stdout, stderr); the exit code is read from the container, not from `docker run`."""
    with tempfile.TemporaryDirectory() as tmp:
        passfile = Path(tmp) / "pgpass"
        passfile.write_text(f"*:*:*:{user}:{password}\n" if password is not None else "")
        passfile.chmod(0o600)
        name = f"{INSTANCE.compose_project}-pgclient-{uuid.uuid4().hex[:8]}"
        os.chown(passfile, UIDS["postgres"], UIDS["postgres"])  # the image runs as the server's UID
        conninfo = (f"host={host} port={naming.POSTGRES_PORT} dbname={db} user={user} sslmode={sslmode} "
                    f"sslrootcert=/run/ca.crt connect_timeout=10")
        subprocess.run(["docker", "create", "--name", name, "--network", INSTANCE.network(network),
                        "--label", f"com.docker.compose.project={INSTANCE.compose_project}",
                        "-v", f"{TLS / 'ca.crt'}:/run/ca.crt:ro", "-v", f"{passfile}:/run/pgpass:ro",
                        "-e", "PGPASSFILE=/run/pgpass", "--entrypoint", "psql", IMAGE,
                        "-X", "-At", "-v", "ON_ERROR_STOP=1", "-w", "-c", sql, conninfo],
                       check=True, capture_output=True, timeout=60)
        try:
            run = subprocess.run(["docker", "start", "-a", name], capture_output=True, text=True, timeout=120)
            code = int(d.inspect(name)["State"]["ExitCode"])
            return code, run.stdout.strip(), run.stderr.strip()
        finally:
            subprocess.run(["docker", "rm", "-f", name], capture_output=True)


def as_tenant(tenant: str, sql: str, db: str | None = None, **kw) -> tuple[int, str, str]:
    """`sql` as tenant's own role, from its own network, on its own database unless `db` says otherwise."""
    return client(naming.tenant_network(tenant), naming.database_role(tenant), tenant_password(tenant),
                  db or naming.database_name(tenant), sql, **kw)


def tenant_sql(tenant: str, sql: str) -> str:
    """as_tenant() that must succeed: its output (psql's, unstripped)."""
    code, out, err = as_tenant(tenant, sql)
    assert code == 0, err
    return out
