"""Adding a throwaway tenant to the test instance and taking every trace of it away again (until the product has a
tenant-remove task of its own): its services, env file, certificates, volume, Redis keys and ACL users, and on
PostgreSQL its database and role."""
import subprocess

from deployment import naming
from ops.config.paths import INSTANCE, TLS
from ops.config.tenants import env_path
from ops.deploy import containers, redis_admin
from tests.support import deployment as d


def add(name: str, *flags: str) -> str:
    return d.invoke("tenant-add", name, *flags).stdout


def remove(name: str) -> str:
    """Every trace of tenant `name`; returns what `init` said (it removes the tenant's ACL users)."""
    d.invoke("down", "--tenant", name, check=False)
    certificates = [TLS / f"{cn}.{ext}" for cn in (naming.redis_user(name), naming.metrics_user(name))
                    for ext in ("crt", "key")]
    for path in (env_path(name), *certificates):
        path.unlink(missing_ok=True)
    subprocess.run(["docker", "volume", "rm", "-f", containers.volume(naming.data_volume(name))], capture_output=True)
    redis_admin.unlink_matching(d.client(), naming.key_prefix(name) + "*")
    said = d.invoke("init").stdout  # the one ACL writer removes its users from the auth file and the live Redis
    # Its network: the running servers leave it (the next `up` would do it; none may come before other tests look)
    network = INSTANCE.network(naming.tenant_network(name))
    for server in (naming.REDIS_SERVICE, naming.POSTGRES_SERVICE):
        subprocess.run(["docker", "network", "disconnect", network, d.container(server)], capture_output=True)
    subprocess.run(["docker", "network", "rm", network], capture_output=True)
    if d.inspect_running(naming.POSTGRES_SERVICE):
        from tests.support import postgres

        db, role = naming.database_name(name), naming.database_role(name)
        postgres.superuser(f"DROP DATABASE IF EXISTS {db} WITH (FORCE);\nDROP ROLE IF EXISTS {role};\n"
                           f"DROP ROLE IF EXISTS {naming.database_metrics_role(name)};\n")
    return said
