"""The broker connection is verified TLS: CA, client certificate, AND the server's name."""
import ssl

import pytest

from tests.app.tcp_forwarder import TcpForwarder
from tests.app.tenant_apps import tenant_app, tenant_config


def ping_broker(app) -> bool:
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=5)
        channel = conn.channel()
        try:
            return channel.client.ping()
        finally:
            channel.close()


def test_broker_url_is_rediss_as_the_tenant_user_on_db_0(local_redis, tmp_path):
    app = tenant_app(tenant_config(local_redis, "a", tmp_path))
    with app.connection_for_write() as conn:
        assert conn.transport_cls == "rediss"
        assert (conn.userid, conn.hostname, conn.port, conn.virtual_host) == \
            ("tenant-a", "127.0.0.1", local_redis.port, "0")
        assert conn.ssl["ssl_cert_reqs"] == ssl.CERT_REQUIRED and conn.ssl["ssl_check_hostname"] is True


def test_connects_when_the_host_is_in_the_server_certificate(local_redis, tmp_path):
    assert ping_broker(tenant_app(tenant_config(local_redis, "a", tmp_path))) is True


def test_password_with_url_special_characters_is_quoted(local_redis, tmp_path):
    """A password full of URL syntax reaches Redis intact (the operator adds it as a second password)."""
    password = "p@ss:w/rd?#%+ &="
    operator = local_redis.client()
    operator.execute_command("ACL", "SETUSER", "tenant-a", f">{password}")
    try:
        assert ping_broker(tenant_app(tenant_config(local_redis, "a", tmp_path, REDIS_PASSWORD=password))) is True
    finally:
        operator.execute_command("ACL", "SETUSER", "tenant-a", f"<{password}")


@pytest.mark.attacks  # a wrong password is an ACL LOG entry (reason auth)
def test_a_wrong_password_is_refused(local_redis, tmp_path):
    app = tenant_app(tenant_config(local_redis, "a", tmp_path, REDIS_PASSWORD="not-the-password"))
    with pytest.raises(Exception, match="(?i)invalid username-password|WRONGPASS"):
        ping_broker(app)


def test_refuses_a_server_reached_under_an_ip_not_in_its_certificate(local_redis, tmp_path):
    """Same server, same CA, valid chain: only the name differs (127.0.0.2 is not a SAN)."""
    forwarder = TcpForwarder("127.0.0.2", (local_redis.host, local_redis.port))
    try:
        app = tenant_app(tenant_config(local_redis, "a", tmp_path, REDIS_HOST="127.0.0.2",
                                       REDIS_PORT=str(forwarder.address[1])))
        with pytest.raises(Exception) as raised:
            ping_broker(app)
        assert "IP address mismatch" in str(raised.value) or "hostname" in str(raised.value).lower(), raised.value
    finally:
        forwarder.close()


def test_the_forwarder_itself_works_when_hostname_checking_is_off(local_redis, tmp_path):
    """Control for the test above: the only reason it fails is the name check."""
    forwarder = TcpForwarder("127.0.0.2", (local_redis.host, local_redis.port))
    try:
        app = tenant_app(tenant_config(local_redis, "a", tmp_path, REDIS_HOST="127.0.0.2",
                                       REDIS_PORT=str(forwarder.address[1])))
        app.conf.broker_use_ssl = {**app.conf.broker_use_ssl, "ssl_check_hostname": False}
        assert ping_broker(app) is True
    finally:
        forwarder.close()


def test_refuses_a_server_signed_by_another_ca(local_redis, tmp_path):
    from ops.secrets import tls

    other_ca, other_key = tmp_path / "other-ca.crt", tmp_path / "other-ca.key"
    tls.make_ca(other_ca, other_key, cn="someone else's CA")
    app = tenant_app(tenant_config(local_redis, "a", tmp_path, TLS_CA_FILE=str(other_ca)))
    with pytest.raises(Exception, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        ping_broker(app)
