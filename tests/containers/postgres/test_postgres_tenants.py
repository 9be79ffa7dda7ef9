"""Tenants on PostgreSQL: each its own database and role with only its rights and limits, TLS-only SCRAM logins,
and no way from one tenant to another's database (the attacks are tried), beside tenants on SQLite."""
import json
import re
import subprocess

import pytest

from deployment import naming
from ops.config.envfile import read_env
from ops.config.paths import INSTANCE
from ops.config.tenants import env_path
from tests.support import deployment as d
from tests.support import postgres as pg

pytestmark = pytest.mark.usefixtures("postgres_tenants_up")


def _result_ids(tenant: str) -> set[str]:
    rows = pg.superuser("SELECT task_id FROM django_celery_results_taskresult;", db=naming.database_name(tenant))
    return set(rows.split())


def test_each_postgres_tenant_serves_and_keeps_results_in_its_own_database():
    for tenant in ("pgb", "pgc", "a"):
        assert d.http("GET", d.web_url(tenant, "/healthz")) == (200, {"tenant": tenant, "database": "ok",
                                                                      "broker": "ok"})
    ids = {t: d.post_echo(t, f"hello {t}") for t in ("pgb", "pgc")}
    for tenant, task_id in ids.items():
        assert d.wait_for_results(tenant, [task_id])[task_id]["result"]["tenant"] == tenant
    assert ids["pgb"] in _result_ids("pgb") and ids["pgb"] not in _result_ids("pgc")
    assert ids["pgc"] in _result_ids("pgc") and ids["pgc"] not in _result_ids("pgb")
    # the SQLite tenant's file is where it was; no database of its own on the server
    assert pg.superuser("SELECT count(*) FROM pg_database WHERE datname = 'tenant_a';") == "0"


def test_roles_have_only_their_own_rights_and_the_tenants_limits():
    row = pg.superuser("SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, rolinherit, "
                       "rolconnlimit, array_to_string(rolconfig, ',') FROM pg_roles WHERE rolname = 'tenant_pgb';")
    assert row == "f|f|f|f|f|f|20|statement_timeout=30s"
    owner, acl = pg.superuser("SELECT pg_get_userbyid(datdba), datacl FROM pg_database "
                              "WHERE datname = 'tenant_pgb';").split("|")
    assert owner == "tenant_pgb"
    assert not re.search(r"(^|[{,])=[^,}]*c", acl)  # PUBLIC has no CONNECT ("=Tc/..." would grant it)
    # statement_timeout holds for the tenant's sessions: a statement longer than it is cancelled
    code, _, err = pg.as_tenant("pgb", "SET statement_timeout = '1s'; SELECT pg_sleep(3);")
    assert code == 1 and "canceling statement due to statement timeout" in err
    code, out, _ = pg.as_tenant("pgb", "SHOW statement_timeout;")
    assert (code, out) == (0, "30s")


@pytest.mark.attacks
def test_plain_tcp_and_unverified_names_are_refused():
    code, _, err = pg.as_tenant("pgb", "SELECT 1;", sslmode="disable")
    assert code == 2 and "no pg_hba.conf entry" in err and "no encryption" in err
    # verify-full: the certificate names `postgres`, so the same server under another name is not trusted
    ip = d.inspect(pg.SERVER)["NetworkSettings"]["Networks"][INSTANCE.network(naming.tenant_network("pgb"))]
    code, _, err = pg.as_tenant("pgb", "SELECT 1;", host=ip["IPAddress"])
    assert code == 2 and "does not match host name" in err
    # the bootstrap superuser exists only on the server's own socket
    code, _, err = pg.client(naming.tenant_network("pgb"), "postgres", pg.tenant_password("pgb"), "postgres",
                             "SELECT 1;")
    assert code == 2 and "no pg_hba.conf entry" in err


@pytest.mark.attacks
def test_a_tenant_cannot_reach_another_tenants_database():
    # connect: to the other's database, with its own password and with nothing (each refused by pg_hba.conf)
    for db in ("tenant_pgc", "postgres", "template1"):
        code, _, err = pg.as_tenant("pgb", "SELECT 1;", db=db)
        assert code == 2 and "no pg_hba.conf entry" in err, (db, err)
    code, _, err = pg.client(naming.tenant_network("pgb"), "tenant_pgc", pg.tenant_password("pgb"), "tenant_pgc",
                             "SELECT 1;")
    assert code == 2 and "password authentication failed" in err
    # a SQLite tenant's network has no PostgreSQL at all
    code, _, err = pg.client(naming.tenant_network("a"), "tenant_pgb", pg.tenant_password("pgb"), "tenant_pgb",
                             "SELECT 1;")
    assert code == 2 and "could not translate host name" in err
    # read: a cross-database reference, the other's role, the server's files and programs, new databases
    # pgc's own table (owned by its role, as its project's would be, so backups and dumps of pgc still read it)
    pg.superuser("CREATE TABLE IF NOT EXISTS secret_of_c (v text); INSERT INTO secret_of_c VALUES ('c only');"
                 "ALTER TABLE secret_of_c OWNER TO tenant_pgc;", db="tenant_pgc")
    attempts = {
        "SELECT * FROM tenant_pgc.public.secret_of_c;": "cross-database references are not implemented",
        "SET ROLE tenant_pgc;": "permission denied to set role",
        "SELECT pg_read_file('/var/lib/postgresql/data/postgresql.auto.conf');": "permission denied",
        "COPY (SELECT 1) TO PROGRAM 'id';": "permission denied",
        "CREATE DATABASE stolen;": "permission denied to create database",
        "CREATE ROLE helper LOGIN;": "permission denied to create role",
        "ALTER ROLE tenant_pgb CONNECTION LIMIT -1;": "permission denied",
    }
    for sql, refusal in attempts.items():
        code, _, err = pg.as_tenant("pgb", sql)
        assert code == 1 and refusal in err, (sql, err)
    # list: the other database's tables are in its own catalog, out of reach without a connection
    code, out, _ = pg.as_tenant("pgb", "SELECT count(*) FROM information_schema.tables "
                                       "WHERE table_name = 'secret_of_c';")
    pg.superuser("DROP TABLE secret_of_c;", db="tenant_pgc")  # the other tests see pgc as its project left it
    assert (code, out) == (0, "0")


def test_limitation_database_names_are_visible_to_every_tenant_on_the_server():
    """pg_database and pg_roles are cluster-wide catalogs every role reads (PostgreSQL's design; revoking them
    breaks pg_dump and psql): a PostgreSQL tenant sees the other PostgreSQL tenants' names, nothing more."""
    code, out, _ = pg.as_tenant("pgb", "SELECT datname FROM pg_database ORDER BY 1;")
    assert code == 0 and "tenant_pgc" in out.split()


def test_password_is_resent_only_when_it_changed_and_running_processes_restart_with_it():
    stored = "SELECT rolpassword FROM pg_authid WHERE rolname = 'tenant_pgb';"
    before = pg.superuser(stored)
    out = d.invoke("up", "--tenant", "pgb").stdout
    assert pg.superuser(stored) == before and "new password for tenant_pgb" not in out  # untouched
    path = env_path("pgb")
    old_password = pg.tenant_password("pgb")
    new_password = "rotated-" + old_password[::-1]
    text = path.read_text()
    path.write_text(text.replace(f"DATABASE_PASSWORD={old_password}", f"DATABASE_PASSWORD={new_password}"))
    out = d.invoke("up", "--tenant", "pgb").stdout
    assert "secrets of tenant pgb changed: restarting" in out
    assert "new password for tenant_pgb" in out
    assert pg.superuser(stored) != before
    code, _, err = pg.client(naming.tenant_network("pgb"), "tenant_pgb", old_password, "tenant_pgb", "SELECT 1;")
    assert code == 2 and "password authentication failed" in err
    assert pg.as_tenant("pgb", "SELECT 1;")[0] == 0
    task_id = d.post_echo("pgb", "after rotation")  # the restarted web and worker use the new password
    assert d.wait_for_results("pgb", [task_id])[task_id]["status"] == "SUCCESS"
    assert read_env(path)["DATABASE_PASSWORD"] == new_password


def test_connection_budget_is_refused_before_anything_changes():
    path = env_path("pgc")
    text = path.read_text()
    started = d.inspect(pg.SERVER)["State"]["StartedAt"]
    hba = (INSTANCE.postgres_config / "pg_hba.conf").read_text()
    try:
        path.write_text(re.sub(r"(?m)^DATABASE_CONNECTION_LIMIT=.*$", "DATABASE_CONNECTION_LIMIT=1000", text))
        proc = d.invoke("up", "--tenant", "pgc", check=False)
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr
        assert "max_connections" in lines[0] and "DATABASE_CONNECTION_LIMIT" in lines[0]
        assert d.inspect(pg.SERVER)["State"]["StartedAt"] == started
        assert (INSTANCE.postgres_config / "pg_hba.conf").read_text() == hba
        assert pg.superuser("SELECT rolconnlimit FROM pg_roles WHERE rolname = 'tenant_pgc';") == "20"
    finally:
        path.write_text(text)


def test_server_is_hardened_and_on_postgres_tenants_networks_only():
    found = d.inspect(pg.SERVER)
    host = found["HostConfig"]
    assert found["Config"]["User"].split(":")[0] == str(naming_uid())
    assert host["ReadonlyRootfs"] and host["SecurityOpt"] and "no-new-privileges" in json.dumps(host["SecurityOpt"])
    # no capability at all, whichever way the engine lists the dropped ones (Docker "ALL", Podman each by name)
    status = subprocess.run(["docker", "exec", pg.SERVER, "cat", "/proc/1/status"], capture_output=True, text=True,
                            check=True).stdout
    assert re.search(r"(?m)^CapEff:\s*0+$", status) and re.search(r"(?m)^CapBnd:\s*0+$", status), status
    # never published on the host (Podman lists the image's EXPOSE as a port with no binding)
    assert host["Memory"] > 0 and host["PidsLimit"] > 0 and not any((host["PortBindings"] or {}).values())
    attached = set(found["NetworkSettings"]["Networks"])
    wanted = {INSTANCE.network(n) for n in (naming.tenant_network("pgb"), naming.tenant_network("pgc"),
                                            naming.operator_network(naming.POSTGRES_SERVICE))}
    assert attached == wanted


def naming_uid() -> int:
    from deployment.instance import UIDS

    return UIDS["postgres"]
