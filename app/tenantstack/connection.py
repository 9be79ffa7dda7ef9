"""How every client of the glue reaches the tenant's Redis: one URL, one set of TLS options, one result lifetime.

Shared by the broker (celery_config) and the Redis roles (roles): the tenant's ACL user over TLS with its client
certificate, verifying the server's chain and name.
"""
import ssl
from datetime import timedelta
from urllib.parse import quote

from deployment import naming
from tenantstack.env import Config

# How long a task's result is kept: Redis results expire by this TTL (results role); database results are deleted
# in batches by tenantstack.cleanup_stale_results.
RESULT_EXPIRES = timedelta(days=7)


def redis_url(config: Config) -> str:
    """rediss://<the tenant's user>:<password>@<server>/<db>; Celery and kombu mask the password when they log it."""
    user = quote(naming.redis_user(config.tenant), safe="")
    password = quote(config.redis_password, safe="")
    return f"rediss://{user}:{password}@{config.redis_host}:{config.redis_port}/{naming.BROKER_DB}"


def tls_options(config: Config) -> dict:
    """Passed unchanged to redis-py's SSLConnection (by kombu, Celery's backend and the roles): verify the server's
    chain AND its name, present the tenant's client certificate."""
    return {
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
        "ssl_ca_certs": str(config.tls_ca_file),
        "ssl_certfile": str(config.tls_cert_file),
        "ssl_keyfile": str(config.tls_key_file),
        "ssl_check_hostname": True,  # redis-py's default, spelled out: REDIS_HOST must be in the server's SANs
        "ssl_min_version": ssl.TLSVersion.TLSv1_2,
    }
