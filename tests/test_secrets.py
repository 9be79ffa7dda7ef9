"""Secrets are generated once, kept on re-runs, and bad ones are refused with one clear line."""
import hashlib

import pytest

from deployment import envs
from ops.config.envfile import redis_settings, rel, require
from ops.config.paths import ENVS, REDIS_AUTH_CONF, REDIS_ENV, SECRETS, TLS
from ops.core.errors import OpsError
from ops.secrets import generate as secrets
from ops.secrets import tls
from tests.support.deployment import invoke


def _digest_tree(root):
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def test_init_keeps_existing_secrets_and_says_so():
    invoke("init")
    before = _digest_tree(SECRETS) | _digest_tree(ENVS)
    out = invoke("init").stdout
    assert f"kept     {rel(REDIS_ENV)}" in out and f"kept     {rel(TLS / 'ca.crt')}" in out
    assert "created" not in out
    assert (_digest_tree(SECRETS) | _digest_tree(ENVS)) == before


def test_generated_passwords_are_strong_and_distinct():
    values = redis_settings()
    passwords = [values[k] for k in ("REDIS_PASSWORD", "REDIS_HEALTH_PASSWORD", "REDIS_COMMANDER_PASSWORD")]
    assert len(set(passwords)) == 3 and all(len(p) >= 40 for p in passwords)
    assert all(values[k].split("_")[0] in ("CONFIG", "KEYS", "SHUTDOWN") and len(values[k]) > 20
               for k in ("REDIS_CONFIG_COMMAND", "REDIS_KEYS_COMMAND", "REDIS_SHUTDOWN_COMMAND"))


def test_private_keys_are_not_world_readable():
    for key in TLS.glob("*.key"):
        assert key.stat().st_mode & 0o077 == 0, key
    assert REDIS_AUTH_CONF.stat().st_mode & 0o077 == 0


def test_certificate_not_matching_its_key_is_refused_in_one_line(tmp_path):
    tls.make_ca(tmp_path / "ca.crt", tmp_path / "ca.key")
    for n in ("one", "two"):
        tls.make_leaf(tmp_path / "ca.crt", tmp_path / "ca.key", tmp_path / f"{n}.crt", tmp_path / f"{n}.key", n)
    with pytest.raises(OpsError) as exc:
        tls.check_pair(tmp_path / "one.crt", tmp_path / "two.key", tmp_path / "ca.crt")
    assert "does not match its key" in str(exc.value) and "--rotate" in str(exc.value) and "\n" not in str(exc.value)
    tls.check_pair(tmp_path / "one.crt", tmp_path / "one.key", tmp_path / "ca.crt")


def test_certificate_from_another_ca_is_refused(tmp_path):
    for ca in ("ca1", "ca2"):
        tls.make_ca(tmp_path / f"{ca}.crt", tmp_path / f"{ca}.key")
    tls.make_leaf(tmp_path / "ca1.crt", tmp_path / "ca1.key", tmp_path / "x.crt", tmp_path / "x.key", "x")
    with pytest.raises(OpsError, match="was not issued by"):
        tls.check_pair(tmp_path / "x.crt", tmp_path / "x.key", tmp_path / "ca2.crt")


def test_missing_secret_file_is_named(tmp_path):
    with pytest.raises(OpsError, match=r"x.crt is missing: run `./invoke init`"):
        tls.check_pair(tmp_path / "x.crt", tmp_path / "x.key")


def test_example_and_missing_values_are_all_named_at_once(tmp_path):
    values = {**envs.tenant_values("a", 8001), "DJANGO_SECRET_KEY": "fine", "REDIS_PASSWORD": "",
              "CELERY_WORKER_CONCURRENCY": "0"}
    del values["TENANT"]
    with pytest.raises(OpsError) as exc:
        require(values, envs.TENANT_SETTINGS, tmp_path / "x.env")
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith(f"{tmp_path / 'x.env'}: missing TENANT, REDIS_PASSWORD; ")
    assert "DJANGO_ADMIN_PASSWORD, DATABASE_PASSWORD still at the example value 'change-me': run `./invoke init`" in msg
    assert "CELERY_WORKER_CONCURRENCY=0 is out of range 1..256: set it to the number of worker processes" in msg


def test_server_certificate_names_redis_localhost_and_loopback():
    from cryptography import x509

    cert = x509.load_pem_x509_certificate((TLS / "redis.crt").read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.DNSName)) == {"redis", "localhost"}
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]


def test_auth_file_is_derived_from_the_env_files():
    text = REDIS_AUTH_CONF.read_text()
    env = secrets.redis_settings()
    assert f"requirepass {env['REDIS_PASSWORD']}\n" in text
    assert f"rename-command CONFIG {env['REDIS_CONFIG_COMMAND']}\n" in text
    assert 'rename-command FLUSHALL ""' in text
    assert "user tenant-a reset on >" in text and "~tenant-a:* resetchannels &tenant-a:*" in text
    # Valkey 8.1 knows CLIENT SETINFO (redis-py sends it on every connect): granted, so no ACL LOG entry.
    assert "+client|setinfo" in text


def test_a_secret_row_newer_than_the_env_file_is_generated_and_an_older_missing_one_refused():
    """DATABASE_PASSWORD arrived after tenants' env files were written: an env file without it makes `up` run init,
    which adds it and keeps everything else. A REDIS_PASSWORD deleted by hand is the operator's slip: no new password
    behind the tenant's running processes, the one-line refusal of check_all instead."""
    from ops.config.envfile import read_env
    from ops.config.tenants import env_path

    invoke("init")
    path = env_path("b")
    original = path.read_text()
    try:
        path.write_text("".join(ln for ln in original.splitlines(keepends=True)
                                if not ln.startswith("DATABASE_PASSWORD=")))
        assert secrets.missing()
        invoke("init")
        values = read_env(path)
        assert values["DATABASE_PASSWORD"] not in ("", envs.PLACEHOLDER)
        assert {k: v for k, v in values.items() if k != "DATABASE_PASSWORD"} == {
            k: v for k, v in read_env_text(original).items() if k != "DATABASE_PASSWORD"}
        path.write_text("".join(ln for ln in original.splitlines(keepends=True)
                                if not ln.startswith("REDIS_PASSWORD=")))
        assert not secrets.missing()
        with pytest.raises(OpsError, match="missing REDIS_PASSWORD"):
            secrets.check_all(["a", "b"])
    finally:
        path.write_text(original)


def read_env_text(text: str) -> dict:
    return dict(ln.split("=", 1) for ln in text.splitlines() if "=" in ln and not ln.lstrip().startswith("#"))
