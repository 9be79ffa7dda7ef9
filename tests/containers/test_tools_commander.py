"""redis-commander (profile `tools`): behind its login, read-only twice over, sees every tenant's keys over TLS.

Real containers through `./invoke up --tools`; a real headless Chromium (Debian's) driven by Playwright.
Tests that need keys seed fresh ones with the operator client and remove them afterwards.
"""
import datetime
import json
import secrets
import stat
import subprocess
import urllib.error
import urllib.parse
import urllib.request

import pytest

import redis
from deployment import naming
from deployment.instance import UIDS
from ops.config.paths import ARTIFACTS, COMMANDER_SETTINGS, INSTANCE
from ops.secrets import commander as tools
from tests.support import browser
from tests.support.deployment import client, container, inspect, invoke, redis_env

SCREENSHOT = ARTIFACTS / "redis-commander.png"
# Long enough to ride out a Redis restart by a concurrent `./invoke up` (the UI reconnects within ~15 s).
UI_TIMEOUT_MS = 30_000
# redis-commander's id of its one connection: R:<host>:<port>:<db>.
CONNECTION = f"R:{tools.REDIS_HOST}:{naming.REDIS_TLS_PORT}:{naming.BROKER_DB}"


@pytest.fixture(scope="session")
def commander_url():
    """redis + redis-commander up and healthy through ./invoke up --tools (idempotent)."""
    invoke("up", "--tools")
    return tools.url()


@pytest.fixture
def seeded(commander_url):
    """A fresh string key per tenant, written by the operator: {key: value}."""
    tag = secrets.token_hex(4)
    keys = {f"tenant-a:commander-test-{tag}": f"value-a-{tag}", f"tenant-b:commander-test-{tag}": f"value-b-{tag}"}
    operator = client()
    operator.mset(keys)
    yield keys
    operator.delete(*keys, *(f"{k}-renamed" for k in keys))


def _http(method: str, url: str, body: dict | None = None, token: str | None = None) -> tuple[int, str]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _sign_in(url: str, user: str, password: str) -> dict:
    status, body = _http("POST", url + "signin", {"username": user, "password": password})
    assert status == 200, body
    return json.loads(body)


def _session(url: str) -> str:
    env = redis_env()
    answer = _sign_in(url, env["COMMANDER_HTTP_USER"], env["COMMANDER_HTTP_PASSWORD"])
    assert answer["ok"], answer
    return answer["bearerToken"]


def _key_path(key: str) -> str:
    return f"apiv2/key/{CONNECTION}/{urllib.parse.quote(key)}"


def test_nothing_about_keys_is_served_without_login(commander_url, seeded):
    key, value = next(iter(seeded.items()))
    prefix = key.split(":")[0] + ":"
    reads = ["connections", "apiv2/server/info", f"apiv2/keystree/{CONNECTION}",
             f"apiv2/keystree/{CONNECTION}/{prefix}",
             f"apiv2/keys/{CONNECTION}/{prefix}", _key_path(key), f"apiv1/key/{CONNECTION}/{urllib.parse.quote(key)}",
             f"tools/export?connection={CONNECTION}"]
    env = redis_env()
    assert not _sign_in(commander_url, env["COMMANDER_HTTP_USER"], "wrong-" + env["COMMANDER_HTTP_PASSWORD"])["ok"]
    for path in reads:
        for token in (None, "not-a-session-token"):
            status, body = _http("GET", commander_url + path, token=token)
            assert status == 401, f"GET /{path} with token={token!r}: {status} {body[:200]}"
            assert key.split(":", 1)[1] not in body and value not in body, f"/{path} leaked the key"
    status, page = _http("GET", commander_url)  # the page itself loads without login: nothing of Redis in it
    assert status == 200 and key.split(":", 1)[1] not in page and value not in page
    # Control: the same URLs do answer with a session, so the 401s above are the login, not a wrong path.
    token = _session(commander_url)
    status, body = _http("GET", commander_url + _key_path(key), token=token)
    assert status == 200 and json.loads(body)["value"] == value, body
    status, body = _http("GET", commander_url + f"apiv2/keystree/{CONNECTION}/{prefix}", token=token)
    assert status == 200 and key in body, body


class _PageRecord:
    """What the page said while the test drove it: dialogs, console, navigations, sign-in and tree answers, and
    every answer of 400 or more. Shown whole when the test fails."""

    WATCHED = ("/signin", "/connections", "keystree")

    def __init__(self, page, password: str):
        self.lines: list[str] = []
        self.refused: list[str] = []  # "<status> <url>" of every answer >= 400
        self._password = password
        page.on("dialog", lambda d: (self._note(f"dialog: {d.message}"), d.dismiss()))
        page.on("console", lambda m: self._note(f"console {m.type}: {m.text}"))
        page.on("framenavigated", lambda f: self._note(f"navigated: {f.url}") if f == page.main_frame else None)
        page.on("response", self._answered)
        page.on("requestfailed", lambda r: self._note(f"failed: {r.method} {r.url} {r.failure}"))

    def _note(self, line: str) -> None:
        self.lines.append(f"{datetime.datetime.now(datetime.UTC):%H:%M:%S.%f} {line}")

    def _answered(self, response) -> None:
        if response.status >= 400:
            self.refused.append(f"{response.status} {response.url}")
        if not any(w in response.url for w in self.WATCHED):
            return
        try:
            body = response.text()[:120]
        except Exception as exc:  # noqa: BLE001 - the body may be gone after a navigation
            body = f"<{exc.__class__.__name__}>"
        sent = response.request.post_data or ""
        token = response.request.headers.get("authorization")
        kind = "password" if "password" in sent else "token" if token else "none"
        self._note(f"{response.request.method} {response.url} [{kind}] -> {response.status} "
                   f"{body.replace(self._password, '<password>')}")


def _commander_state() -> str:
    name = container(tools.SERVICE)
    logs = subprocess.run(["docker", "logs", "--timestamps", "--tail", "40", name], capture_output=True, text=True)
    return f"{json.dumps(inspect(name)['State'])[:600]}\n{logs.stdout}{logs.stderr}"


def _refusals_of_the_ui() -> list[dict]:
    """ACL LOG entries of the `commander` user on connections from the redis-commander container itself (the
    tests' own commander client, refused on purpose below, connects from the host)."""
    networks = inspect(container(tools.SERVICE))["NetworkSettings"]["Networks"]
    ip = networks[INSTANCE.network(naming.TOOLS_NETWORK)]["IPAddress"]
    return [entry for entry in client().acl_log(count=1000) if entry.get("username") == tools.REDIS_USER
            and (entry.get("client-info") or {}).get("addr", "").rsplit(":", 1)[0] == ip]


def test_browser_signs_in_and_shows_both_tenants_keys_and_a_value(commander_url, seeded):
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import expect

    env = redis_env()
    (key_a, value_a), (key_b, _) = sorted(seeded.items())
    SCREENSHOT.parent.mkdir(exist_ok=True)

    def scenario(page):
        record = _PageRecord(page, env["COMMANDER_HTTP_PASSWORD"])
        try:
            page.goto(commander_url)
            expect(page.locator("#signinModal")).to_be_visible(timeout=UI_TIMEOUT_MS)
            # Settled as a person would see it: faded in, and its `shown` handler has focused the user field.
            expect(page.locator("#signinModal.in #signinUsername")).to_be_focused(timeout=UI_TIMEOUT_MS)
            expect(page.locator("#keyTree")).not_to_contain_text("tenant-a")
            page.fill("#signinUsername", env["COMMANDER_HTTP_USER"])
            page.fill("#signinPassword", env["COMMANDER_HTTP_PASSWORD"])
            with page.expect_navigation(timeout=UI_TIMEOUT_MS):  # an accepted login reloads the page
                page.click("#signinButton")
            assert page.evaluate("sessionStorage.getItem('redisCommanderBearerToken')"), "no session"
            for key in (key_a, key_b):
                folder = page.locator(f'[id="{CONNECTION}:{key.split(":")[0]}:"]')
                expect(folder).to_be_visible(timeout=UI_TIMEOUT_MS)
                if "jstree-closed" in (folder.get_attribute("class") or ""):
                    folder.locator(":scope > i.jstree-ocl").click()
                expect(page.locator(f'[id="{CONNECTION}:{key}_anchor"]')).to_be_visible(timeout=UI_TIMEOUT_MS)
            page.locator(f'[id="{CONNECTION}:{key_a}_anchor"]').click()
            expect(page.locator("#body")).to_contain_text(f"Key: {key_a}", timeout=UI_TIMEOUT_MS)
            expect(page.locator("#body textarea").first).to_have_value(value_a)
            # The JSON view of the value is rendered (the viewer's script loaded), not its error text.
            expect(page.locator("#jqtree_string_div")).to_contain_text(value_a)
            page.screenshot(path=str(SCREENSHOT))
            # Every file the UI loads is served: none is missing or behind the login.
            assert not record.refused, record.refused
            # ...and nothing the UI sent on the way (connect, server info, key tree, value) was refused by
            # Redis: its ACL rule (deployment/acl.py COMMANDER_COMMANDS) covers its whole normal traffic.
            assert not _refusals_of_the_ui(), _refusals_of_the_ui()
        except (AssertionError, PlaywrightError) as exc:
            # Same type as Playwright's, so browser.drive still sees a network-cut attempt as one to run again.
            raise type(exc)(f"{exc}\n--- the page:\n" + "\n".join(record.lines)
                            + f"\n--- redis-commander: {_commander_state()}") from None

    browser.drive(scenario)
    assert SCREENSHOT.stat().st_size > 10_000


def test_writes_through_the_ui_api_fail_and_redis_is_unchanged(commander_url, seeded):
    token = _session(commander_url)
    key, value = next(iter(seeded.items()))
    writes = [
        ("POST", _key_path(key) + "?action=delete", {}),
        ("POST", _key_path(key), {"stringValue": "overwritten", "keyType": "string"}),
        ("PATCH", _key_path(key), {"key": key + "-renamed"}),
        ("POST", f"apiv2/exec/{CONNECTION}", {"cmd": f"SET {key} overwritten"}),
        ("POST", f"apiv2/exec/{CONNECTION}", {"cmd": f"DEL {key}"}),
    ]
    # Refused by the UI's own --read-only (403, or its command filter), before Redis' ACL is even asked:
    # test_its_redis_user_cannot_write_even_past_the_ui checks that second wall on its own.
    for method, path, body in writes:
        status, answer = _http(method, commander_url + path, body, token=token)
        refused = status == 403 or "Command not read-only" in answer
        assert refused, f"{method} /{path} was not refused by the UI: {status} {answer[:200]}"
    operator = client()
    assert operator.get(key) == value.encode()
    assert not operator.exists(key + "-renamed")


@pytest.mark.attacks  # the writes below are refused on purpose
def test_its_redis_user_cannot_write_even_past_the_ui(commander_url, seeded):
    """The second wall: the `commander` ACL user itself (with its own certificate) may read, never write."""
    key, value = next(iter(seeded.items()))
    commander = client(tools.REDIS_USER, redis_env()["REDIS_COMMANDER_PASSWORD"], cert="commander")
    assert commander.get(key) == value.encode()
    for write in (lambda: commander.set(key, "overwritten"), lambda: commander.delete(key),
                  lambda: commander.rename(key, key + "-renamed")):
        with pytest.raises(redis.exceptions.NoPermissionError):
            write()
    assert client().get(key) == value.encode()


def test_secrets_are_files_not_environment(commander_url):
    env = redis_env()
    secret_values = [env["REDIS_COMMANDER_PASSWORD"], env["COMMANDER_HTTP_PASSWORD"]]
    info = inspect(container(tools.SERVICE))
    visible = json.dumps([info["Config"].get("Env"), info["Config"].get("Cmd"), info.get("Args"),
                          info["Config"].get("Entrypoint"), info["Config"].get("Labels")])
    assert not [v for v in secret_values if v in visible]
    assert "--read-only" in info["Args"] and "--use-scan" in info["Args"]
    assert info["Config"]["User"] == str(UIDS["commander"])
    assert info["HostConfig"]["ReadonlyRootfs"] is True
    mounts = {m["Destination"]: m for m in info["Mounts"]}
    for target in ("/run/secrets/commander", "/run/secrets/tls/client.key", "/run/secrets/tls/ca.crt"):
        assert mounts[target]["RW"] is False, target
    bindings = info["HostConfig"]["PortBindings"][f"{naming.TOOLS_CONTAINER_PORT}/tcp"]
    assert [b["HostIp"] for b in bindings] == ["127.0.0.1"]
    st = COMMANDER_SETTINGS.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (UIDS["commander"], 0o400)


def test_tools_login_prints_the_url_and_the_login(commander_url):
    out = invoke("tools-login").stdout
    env = redis_env()
    assert commander_url in out
    assert env["COMMANDER_HTTP_USER"] in out and env["COMMANDER_HTTP_PASSWORD"] in out
    # ...and that login really opens the UI.
    assert _sign_in(commander_url, env["COMMANDER_HTTP_USER"], env["COMMANDER_HTTP_PASSWORD"])["ok"]
