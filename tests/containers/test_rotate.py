"""`./invoke rotate --tenant b` while b serves under load: no failed request, no lost task, the old password refused
(the attack: AUTH with it, and a connection opened with it before), the new one and a new secret key in the running
web, the same containers; and a rotation SIGKILLed mid-way is finished by `./invoke recover`."""
import http.cookiejar
import re
import time
import urllib.parse
import urllib.request

import pytest

import redis
from deployment import acl, naming
from ops.config.envfile import read_env
from ops.config.paths import REDIS_AUTH_CONF, TLS
from ops.config.tenants import env_path
from ops.data import journal as jn
from tests.support import acl_log, faults
from tests.support import deployment as d
from tests.support.load_loop import Load

pytestmark = [pytest.mark.usefixtures("tenants_up"), pytest.mark.attacks]  # AUTH with the old password
USER = naming.redis_user("b")
SERVICES = [naming.service_name("b", role) for role in naming.ROLES]


def _ids() -> dict[str, str]:
    return {s: d.inspect(d.container(s))["Id"] for s in SERVICES}


def _admin_session(tenant: str) -> urllib.request.OpenerDirector:
    """A browser-like session logged into the tenant's Django admin (its session is signed with the secret key)."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    login = d.web_url(tenant, "/admin/login/?next=/admin/")
    page = opener.open(login, timeout=10).read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    form = {"csrfmiddlewaretoken": token, "username": "admin", "next": "/admin/",
            "password": read_env(env_path(tenant))["DJANGO_ADMIN_PASSWORD"]}
    opener.open(urllib.request.Request(login, urllib.parse.urlencode(form).encode()), timeout=10).read()
    assert _logged_in(opener, tenant), "the admin login did not work before the rotation"
    return opener


def _logged_in(opener, tenant: str) -> bool:
    with opener.open(d.web_url(tenant, "/admin/"), timeout=10) as resp:
        return "/admin/login/" not in resp.geturl()


def _refused(password: str) -> bool:
    try:
        d.client(USER, password, cert=USER, single_connection_client=True).ping()
    except redis.AuthenticationError:
        return True
    return False


def test_rotate_renews_b_under_load_and_refuses_the_old_password():
    ids = _ids()
    assert "leaked" not in {c["name"] for c in d.client().client_list()}
    old = read_env(env_path("b"))
    attacker = d.client(USER, old["REDIS_PASSWORD"], cert=USER, single_connection_client=True)
    attacker.client_setname("leaked")  # CLIENT ID is not granted to tenants: the operator finds it by name
    admin = _admin_session("b")
    old_cert = (TLS / f"{USER}.crt").read_text()
    with Load("b") as load_b, Load("a") as load_a:
        started = time.monotonic()
        out = d.invoke("rotate", "--tenant", "b")
        took = time.monotonic() - started
    reports = [load_b.finish(), load_a.finish()]
    print(f"rotate --tenant b took {took:.1f}s wall time\n" + out.stdout[-1500:])
    for report in reports:
        print(report.line())
        assert report.failed_requests == [] and report.lost_tasks == [], report.line()
    assert acl_log.take(d.client) == [], "a process of b was refused during the rotation"
    new = read_env(env_path("b"))
    assert all(new[k] != old[k] for k in ("REDIS_PASSWORD", "DJANGO_SECRET_KEY", "DATABASE_PASSWORD"))
    # the attack: the leaked password is refused, and the connection opened with it before is gone
    assert _refused(old["REDIS_PASSWORD"])
    assert "leaked" not in {c["name"] for c in d.client().client_list()}
    assert not _refused(new["REDIS_PASSWORD"])
    assert d.client().acl_getuser(USER)["passwords"] == [acl.password_hash(new["REDIS_PASSWORD"])]
    assert acl.password_hash(old["REDIS_PASSWORD"]) not in REDIS_AUTH_CONF.read_text()
    # the running web signs with the new key: the session signed with the old one no longer logs in
    assert not _logged_in(admin, "b")
    assert _ids() == ids, "a container of b was recreated"
    assert (TLS / f"{USER}.crt").read_text() != old_cert
    task = d.post_echo("b", "after rotation")
    assert d.wait_for_results("b", [task])[task]["result"]["tenant"] == "b"
    assert not jn.JOURNAL.exists()


def test_rotate_killed_mid_way_is_finished_by_recover(tmp_path):
    old = read_env(env_path("b"))["REDIS_PASSWORD"]
    faults.killed_at(["rotate", "--tenant", "b"], "rotate-files", tmp_path)
    new = read_env(env_path("b"))["REDIS_PASSWORD"]
    assert new != old
    # killed while both passwords are accepted: b's processes (old password) keep working
    assert not _refused(old) and not _refused(new)
    refused = d.invoke("up", "--tenant", "b", check=False)
    assert refused.returncode != 0 and "recover" in refused.stderr
    out = d.invoke("recover")
    assert acl_log.take(d.client) == [], "a process of b was refused while the rotation was finished"
    assert "finishing the rotation of tenant b" in out.stdout, out.stdout
    assert _refused(old) and not _refused(new)
    assert not jn.JOURNAL.exists()
    task = d.post_echo("b", "after recover")
    d.wait_for_results("b", [task])


def test_rotate_refuses_an_unknown_tenant_in_one_line():
    before = {p.name: p.read_text() for p in env_path("b").parent.glob("tenant-*.env")}
    out = d.invoke("rotate", "--tenant", "zz", check=False)
    assert out.returncode == 2 and "unknown tenant 'zz'" in faults.one_error_line(out.stderr)
    assert {p.name: p.read_text() for p in env_path("b").parent.glob("tenant-*.env")} == before
