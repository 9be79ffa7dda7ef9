"""Monitoring of PostgreSQL tenants on the real deployment: pgb's metrics exporter reads its results and its database
as the read-only role tenant_pgb_metrics (which reads nothing else and cannot get into pgc's database),
prometheus-postgres-exporter reports the server up, and `./invoke status` shows the server and the tenants' databases.

One `./invoke up --monitoring` for the module on the package's instance (a, b on SQLite; pgb, pgc on PostgreSQL), with
the fast rhythm of tests/containers/test_monitoring.py; the profile is taken down again at the end.
"""
import json
import urllib.parse
import urllib.request

import pytest

from deployment import acl, envs, naming
from deployment.instance import UIDS
from ops.config.envfile import read_env
from ops.config.paths import INSTANCE
from ops.core.run import wait_until
from ops.deploy import compose
from tests.support import deployment as d
from tests.support import postgres

FAST = {"PROMETHEUS_SCRAPE_SECONDS": "2", "PROMETHEUS_EVALUATION_SECONDS": "2", "ALERT_FOR_SECONDS": "10",
        "ALERTMANAGER_GROUP_WAIT_SECONDS": "1"}
RESULTS = "django_celery_results_taskresult"


@pytest.fixture(scope="module")
def pg_monitoring(postgres_tenants_up):
    path = INSTANCE.monitoring_env
    if not path.exists():
        d.invoke("init")
    values = {**read_env(path), **FAST}
    path.write_text(envs.render(envs.MONITORING_SETTINGS, values, envs.MONITORING_HEADER))
    tenants = [f"--tenant={n}" for n in ("a", *postgres_tenants_up)]
    yield d.invoke("up", "--monitoring", *tenants, timeout=1200).stdout
    d.invoke("down", "--monitoring")


def query(expr: str) -> dict[str, float]:
    """Prometheus instant query: the tenant (or job) label of each series -> its value."""
    url = f"http://127.0.0.1:{INSTANCE.prometheus_port}/api/v1/query?query={urllib.parse.quote(expr)}"
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - the instance's own Prometheus
        result = json.loads(response.read())["data"]["result"]
    return {r["metric"].get("tenant") or r["metric"].get("job", ""): float(r["value"][1]) for r in result}


def _until(expr: str, ok, what: str, timeout: float = 90) -> dict[str, float]:
    seen = {}

    def pending():
        seen.update(query(expr))
        return None if ok(seen) else f"{what} (now {seen})"

    wait_until(pending, timeout=timeout, what=what, interval=1)
    return seen


def test_pgb_exporter_reports_its_results_and_its_database(pg_monitoring):
    task = d.post_echo("pgb", {"monitoring": 1})
    d.wait_for_results("pgb", [task])
    _until('tenantstack_tasks_finished_total{tenant="pgb",state="succeeded"}', lambda v: v.get("pgb", 0) >= 1,
           "pgb's finished task counted from PostgreSQL")
    # both kinds of tenant read their database (a's exporter may be scraped a round later: slower engines)
    _until('tenantstack_metrics_database_up{tenant=~"pgb|a"}', lambda v: v == {"pgb": 1.0, "a": 1.0},
           "pgb's and a's exporters reading their databases")
    assert query('tenantstack_task_runtime_seconds_count{tenant="pgb"}')["pgb"] >= 1
    assert query('tenantstack_database_size_bytes{tenant="pgb"}')["pgb"] > 1_000_000  # an empty database is ~7 MB
    assert query('tenantstack_database_connection_limit{tenant="pgb"}') == {"pgb": 20.0}
    assert query('tenantstack_database_connections{tenant="pgb"}')["pgb"] >= 1  # web and worker keep theirs
    assert "a" not in query("tenantstack_database_size_bytes")  # SQLite tenants keep their own metric
    assert "a" in query("tenantstack_database_bytes")


def _as_metrics(tenant: str, db: str, sql: str) -> tuple[int, str, str]:
    """`sql` as tenant's metrics role, from ops' PostgreSQL network (where its exporter is), password derived."""
    role = naming.database_metrics_role(tenant)
    return postgres.client(compose.POSTGRES_OPS_NETWORK, role, acl.monitoring_password(d.redis_env(), role), db, sql)


def test_the_metrics_role_reads_only_its_result_table_and_only_in_its_database(pg_monitoring):
    code, out, err = _as_metrics("pgb", "tenant_pgb", f"SELECT count(*) >= 0 FROM {RESULTS}")
    assert (code, out) == (0, "t"), err
    code, _, err = _as_metrics("pgb", "tenant_pgb", "SELECT count(*) FROM auth_user")
    assert code != 0 and "permission denied for table auth_user" in err
    code, _, err = _as_metrics("pgb", "tenant_pgb", f"DELETE FROM {RESULTS}")
    assert code != 0 and ("read-only transaction" in err or "permission denied" in err), err
    code, _, err = _as_metrics("pgb", "tenant_pgc", "SELECT 1")  # pgc's database: no pg_hba.conf line lets it in
    assert code != 0 and "no pg_hba.conf entry" in err and 'database "tenant_pgc"' in err, err
    # its password file: beside its Redis one, readable by the app's UID only
    folder = INSTANCE.monitoring_secrets
    st = (folder / naming.metrics_user("pgb") / compose.METRICS_POSTGRES_PASSWORD_FILE).stat()
    assert (st.st_uid, st.st_mode & 0o777) == (UIDS["app"], 0o400)
    assert not (folder / naming.metrics_user("a") / compose.METRICS_POSTGRES_PASSWORD_FILE).exists()


def test_postgres_exporter_is_up_hardened_and_holds_no_password(pg_monitoring):
    _until("pg_up", lambda v: v.get("postgres") == 1.0, "pg_up 1 from prometheus-postgres-exporter")
    assert query('up{job="postgres"}') == {"postgres": 1.0}
    info = d.inspect(d.container(naming.POSTGRES_EXPORTER_SERVICE))
    password = acl.monitoring_password(d.redis_env(), naming.POSTGRES_MONITOR_ROLE)
    assert password not in json.dumps([info["Config"].get("Env"), info.get("Args"), info["Config"].get("Cmd")])
    assert info["Config"]["User"] == str(UIDS["monitoring"])
    assert info["HostConfig"]["ReadonlyRootfs"] is True and info["HostConfig"]["CapDrop"]
    networks = set(info["NetworkSettings"]["Networks"])
    assert networks == {INSTANCE.network(naming.MONITORING_NETWORK), INSTANCE.network(compose.POSTGRES_OPS_NETWORK)}


def test_status_shows_the_server_and_each_postgres_tenants_database(pg_monitoring):
    doc = json.loads(d.invoke("status", "--json", check=False).stdout)
    server = doc["postgres"]
    assert server["state"] == "healthy" and server["max_connections"] == 200 and server["connections"] >= 1, server
    pgb = doc["tenants"]["pgb"]
    assert pgb["database_kind"] == "postgres" and pgb["database"]["readable"], pgb
    assert pgb["database"]["connection_limit"] == 20 and pgb["database"]["database_size_bytes"] > 1_000_000
    assert pgb["database"]["result_rows"] >= 1 and pgb["database"]["last_task"]["status"] == "SUCCESS"
    assert doc["tenants"]["a"]["database_kind"] == "sqlite"
    screen = d.invoke("status", check=False).stdout
    assert "PostgreSQL: 17" in screen and "healthy, connections" in screen, screen
    lines = screen.splitlines()
    row = next(i for i, line in enumerate(lines) if line.startswith("pgb "))
    assert lines[row + 1].startswith("  database postgres: ") and "connections " in lines[row + 1], screen
