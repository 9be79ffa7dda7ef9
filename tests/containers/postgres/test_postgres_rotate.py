"""`./invoke rotate --tenant pgb` on a PostgreSQL tenant under load: its role gets the new password (the old one is
refused by a real login from its network, the new one accepted), with no failed request and no lost task."""
import pytest

from deployment import naming
from tests.support import deployment as d
from tests.support import postgres as pg
from tests.support.load_loop import Load

pytestmark = pytest.mark.usefixtures("postgres_tenants_up")


def _login(password: str) -> tuple[int, str, str]:
    return pg.client(naming.tenant_network("pgb"), naming.database_role("pgb"), password,
                     naming.database_name("pgb"), "SELECT 1;")


def test_rotate_renews_the_database_password_of_a_postgres_tenant_under_load():
    old = pg.tenant_password("pgb")
    assert _login(old)[0] == 0
    ids = {r: d.inspect(d.container(naming.service_name("pgb", r)))["Id"] for r in naming.ROLES}
    with Load("pgb") as load:
        out = d.invoke("rotate", "--tenant", "pgb")
    report = load.finish()
    print(out.stdout[-1500:] + "\n" + report.line())
    assert report.failed_requests == [] and report.lost_tasks == [], report.line()
    new = pg.tenant_password("pgb")
    assert new != old
    code, _, err = _login(old)  # the attack: the leaked database password
    assert code != 0 and "password authentication failed" in err, err
    assert _login(new) == (0, "1", "")
    assert {r: d.inspect(d.container(naming.service_name("pgb", r)))["Id"] for r in naming.ROLES} == ids
    task = d.post_echo("pgb", "after rotation")
    d.wait_for_results("pgb", [task])
