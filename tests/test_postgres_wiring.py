"""PostgreSQL per tenant (issue 21), the wiring without a server: what `up` renders and installs, what it starts, the
passwords it re-sends, and the Django DATABASES the glue builds from a tenant's configuration. The server itself is
tested by the container tests (and docs/issue21_smoke.py)."""
import os
from pathlib import Path

import pytest

from deployment import envs, naming
from deployment import postgres as model
from deployment import tenant as tenant_model
from ops.config import tenants
from ops.core.errors import OpsError
from ops.deploy import live_networks, postgres_admin


def _db(tenant: str, limit: int = 20, password: str = "pw-" + "x" * 30) -> model.TenantDatabase:
    return model.TenantDatabase(tenant, limit, 30, password)


# ---- the rendered files ------------------------------------------------------------------------------------------
def test_up_renders_pg_hba_and_the_server_facts_and_rewrites_only_what_changed(tmp_path):
    folder = tmp_path / "postgres"
    assert postgres_admin.render([_db("b")], folder) is True
    hba = (folder / postgres_admin.HBA_FILE).read_text()
    assert "hostssl     tenant_b" in hba and "tenant_c" not in hba
    assert (folder / postgres_admin.CONF_FILE).read_text() == model.server_conf()
    assert (folder / postgres_admin.HBA_FILE).stat().st_mode & 0o777 == 0o644  # the server's UID reads it
    assert postgres_admin.render([_db("b")], folder) is False  # unchanged: no rewrite, no reload needed
    assert postgres_admin.render([_db("b"), _db("c")], folder) is True
    assert "tenant_c" in (folder / postgres_admin.HBA_FILE).read_text()
    assert sorted(p.name for p in folder.iterdir()) == [postgres_admin.HBA_FILE, postgres_admin.CONF_FILE]


def test_the_rendered_pg_hba_is_checked_before_it_replaces_the_old_one(tmp_path):
    assert postgres_admin.verify_hba(model.pg_hba([_db("b"), _db("c")])) is None
    assert "line 2" in postgres_admin.verify_hba("# head\nhost all all all trust\n")
    assert postgres_admin.verify_hba("local all tenant_b peer\n") is not None  # the socket is the superuser's only
    assert postgres_admin.verify_hba("hostssl all all all md5\n") is not None
    postgres_admin.render([_db("b")], tmp_path)
    before = (tmp_path / postgres_admin.HBA_FILE).read_text()
    with pytest.raises(OpsError, match=r"pg_hba.conf was not installed: line 1 .* the previous .* is kept"):
        postgres_admin._install(tmp_path, postgres_admin.HBA_FILE, "host all all all trust\n",
                                verify=postgres_admin.verify_hba)
    assert (tmp_path / postgres_admin.HBA_FILE).read_text() == before
    assert not list(tmp_path.glob(".*.partial"))


def test_the_connection_budget_is_refused_in_one_line_before_anything_starts():
    postgres_admin.check_budget([_db("b", 100), _db("c", 86)])  # 186 + 2 metrics x 2 + 4 + 3 = 197: what fits
    with pytest.raises(OpsError) as refused:
        postgres_admin.check_budget([_db("b", 100), _db("c", 87)])
    assert "\n" not in str(refused.value)
    assert "b 100 + c 87 = 187" in str(refused.value) and "lower DATABASE_CONNECTION_LIMIT" in str(refused.value)


def test_a_password_is_re_sent_only_when_the_stored_verifier_no_longer_matches():
    stored = {"tenant_b": model.scram_verifier("same-password"), "tenant_c": model.scram_verifier("old-password")}
    sent = postgres_admin.verifiers({"tenant_b": "same-password", "tenant_c": "new-password",
                                     "tenant_d": "first-password"}, stored)
    assert sent["tenant_b"] == stored["tenant_b"]  # pg_authid left as it is
    assert sent["tenant_c"] != stored["tenant_c"] and model.scram_matches("new-password", sent["tenant_c"])
    assert model.scram_matches("first-password", sent["tenant_d"])


def test_every_role_the_sql_states_gets_a_password(monkeypatch):
    monkeypatch.setattr(postgres_admin, "redis_settings",
                        lambda: {"POSTGRES_OPS_PASSWORD": "ops-" + "y" * 30, "REDIS_MONITORING_SECRET": "z" * 40})
    found = [_db("b"), _db("c")]
    wanted = postgres_admin.passwords(found)
    assert set(wanted) == {naming.POSTGRES_OPS_ROLE, naming.POSTGRES_MONITOR_ROLE, "tenant_b", "tenant_c",
                           "tenant_b_metrics", "tenant_c_metrics"}
    sql = model.provisioning_sql(found, postgres_admin.verifiers(wanted, {}))  # what provision() sends
    assert "CREATE DATABASE tenant_c OWNER tenant_c" in sql


# ---- what `up` starts --------------------------------------------------------------------------------------------
def _tenant(name: str, database: str) -> tenants.Tenant:
    values = envs.tenant_values(name, 8001, secret=lambda k: "x" * 40)
    values["DATABASE"] = database
    return tenants.Tenant(name, 8001, Path(f"envs/tenant-{name}.env"), tenant_model.spec(name, values))


def test_postgres_starts_with_its_profile_only_when_a_started_tenant_is_on_it():
    import tasks

    a, b = _tenant("a", "sqlite"), _tenant("b", "postgres")
    assert not postgres_admin.needed([a]) and postgres_admin.needed([a, b])
    profiles, services = tasks._started([a], tools=False, on_postgres=False)
    assert naming.POSTGRES_PROFILE not in profiles and naming.POSTGRES_SERVICE not in services
    profiles, services = tasks._started([a, b], tools=False, on_postgres=True)
    assert naming.POSTGRES_PROFILE in profiles
    assert services[:2] == [naming.REDIS_SERVICE, naming.POSTGRES_SERVICE]  # before the tenants that depend on it
    assert set(a.services()) | set(b.services()) <= set(services)


def test_a_live_network_variant_is_the_generated_file_with_the_creation_networks_of_one_server():
    doc = {"services": {"redis": {"networks": ["tenant-a", "tenant-b"]},
                        "postgres": {"networks": ["tenant-b", "ops-postgres"]}, "tenant-b-web": {"networks": ["x"]}},
           "networks": {"tenant-a": {}, "tenant-b": {}, "ops-postgres": {}}}
    was = live_networks.variant(doc, "postgres", ["ops-postgres"])
    assert was["services"]["postgres"] == {"networks": ["ops-postgres"]}
    assert was["services"]["redis"] == doc["services"]["redis"]  # the other server untouched
    assert live_networks.record("redis").name == "redis-networks.json"  # Redis' record keeps its name
    assert set(live_networks.SHARED) == {naming.REDIS_SERVICE, naming.POSTGRES_SERVICE}


# ---- the glue's DATABASES ----------------------------------------------------------------------------------------
@pytest.fixture
def environ(tmp_path):
    tls = tmp_path / "tls"
    tls.mkdir()
    for name in ("ca.crt", "client.crt", "client.key"):
        (tls / name).write_text("not a real certificate\n")
    data = tmp_path / "data"
    data.mkdir()
    secret = tmp_path / "database_password"
    secret.write_text("tenant-b-" + "p" * 30 + "\n")
    return {"TENANT": "b", "DJANGO_SECRET_KEY": "k" * 50, "REDIS_PASSWORD": "r" * 40, "DATA_DIR": str(data),
            "TLS_CA_FILE": str(tls / "ca.crt"), "TLS_CERT_FILE": str(tls / "client.crt"),
            "TLS_KEY_FILE": str(tls / "client.key"), "DATABASE": "postgres",
            naming.secret_file_var("DATABASE_PASSWORD"): str(secret)}


def test_a_postgres_tenant_gets_its_own_database_and_role_over_verified_tls(environ):
    from tenantstack import env, overrides

    config = env.read_config(environ)
    default = overrides.databases(config)["default"]
    assert default == {
        "ENGINE": "django.db.backends.postgresql", "HOST": naming.POSTGRES_SERVICE, "PORT": naming.POSTGRES_PORT,
        "NAME": "tenant_b", "USER": "tenant_b", "PASSWORD": "tenant-b-" + "p" * 30,
        "CONN_MAX_AGE": overrides.POSTGRES_CONN_MAX_AGE, "CONN_HEALTH_CHECKS": True,
        "OPTIONS": {"sslmode": "verify-full", "sslrootcert": environ["TLS_CA_FILE"]}}
    url = env.postgres_url(config)  # for project settings that read DATABASE_URL at import
    assert url.startswith(f"postgres://tenant_b:tenant-b-{'p' * 30}@postgres:5432/tenant_b?sslmode=verify-full")
    import dj_database_url

    parsed = dj_database_url.parse(url)
    assert (parsed["NAME"], parsed["USER"], parsed["PASSWORD"]) == ("tenant_b", "tenant_b", default["PASSWORD"])


def test_each_missing_part_of_a_postgres_connection_is_one_clause_with_its_fix(environ, tmp_path):
    from tenantstack import env

    var = naming.secret_file_var("DATABASE_PASSWORD")
    with pytest.raises(env.ConfigError) as missing_file:
        env.read_config({**environ, var: str(tmp_path / "nowhere")})
    assert missing_file.value.problems == [f"{var} {tmp_path / 'nowhere'} is missing: {env.SECRET_FILE_FIX}"]
    with pytest.raises(env.ConfigError) as no_password:
        env.read_config({k: v for k, v in environ.items() if k != var})
    assert str(no_password.value) == f"DATABASE_PASSWORD is missing in the environment: {env.INIT_FIX}"
    with pytest.raises(env.ConfigError) as bad_port:
        env.read_config({**environ, "DATABASE_PORT": "fivefour"})
    assert str(bad_port.value).startswith("DATABASE_PORT='fivefour' is not a whole number")
    with pytest.raises(env.ConfigError) as with_url:
        env.read_config({**environ, "DATABASE_URL": "postgres://u:p@elsewhere/db"})
    assert "DATABASE_URL is set together with DATABASE=postgres" in str(with_url.value)
    with pytest.raises(env.ConfigError) as no_ca:
        env.read_config({**environ, "TLS_CA_FILE": str(tmp_path / "no-ca.crt")})
    assert str(no_ca.value).startswith(f"TLS_CA_FILE {tmp_path / 'no-ca.crt'} is missing")


def test_sqlite_and_database_url_tenants_are_as_before_and_need_no_database_password(environ):
    from tenantstack import env, overrides

    var = naming.secret_file_var("DATABASE_PASSWORD")
    sqlite = {k: v for k, v in environ.items() if k not in ("DATABASE", var)}
    config = env.read_config(sqlite)
    assert not config.on_postgres and config.database_password == ""
    assert overrides.databases(config)["default"]["ENGINE"] == "django.db.backends.sqlite3"
    config = env.read_config({**sqlite, "DATABASE_URL": "postgres://u:secret@db.example:5432/shop"})
    found = overrides.databases(config)["default"]
    assert (found["ENGINE"], found["HOST"], found["NAME"]) == ("django.db.backends.postgresql", "db.example", "shop")


def test_the_process_gets_the_postgres_url_and_password_but_the_container_never_does(environ, monkeypatch):
    from tenantstack import env

    for name in ("DATABASE_URL", "DATABASE_PASSWORD", "DJANGO_SECRET_KEY", "REDIS_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    config = env.read_config(environ)
    env.export_secrets(config)
    assert os.environ["DATABASE_URL"] == env.postgres_url(config)
    assert os.environ["DATABASE_PASSWORD"] == config.database_password
