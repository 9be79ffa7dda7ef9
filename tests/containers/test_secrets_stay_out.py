"""Nothing of secrets/ (or the real env files) is tracked by git, baked into an image layer, or visible in any
container's environment or command line (`docker inspect`); tenants get their secrets as read-only files.
The monitoring image's layers and the monitoring users' derived passwords are searched too (the monitoring
containers' environments: tests/containers/test_monitoring.py)."""
import hashlib
import json
import shutil
import subprocess
import tarfile

import pytest

from deployment import acl, envs, naming
from deployment.instance import COMPONENTS, UIDS
from ops.config.envfile import read_env, rel
from ops.config.paths import ENVS, INSTANCE, REDIS_ENV, ROOT, TLS
from ops.config.tenants import env_path, known_names
from ops.deploy import compose
from tests.support import deployment as d


def test_git_tracks_no_secret():
    tracked = subprocess.run(["git", "ls-files", "secrets", "envs"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    assert not [f for f in tracked if f.startswith("secrets/")]
    assert all(f.endswith(".env.example") for f in tracked), tracked
    # The default instance's secret paths, and this (throwaway) instance's, are all ignored.
    paths = ["secrets/tls/ca.key", "envs/redis.env", "envs/tenant-a.env",
             rel(TLS / "ca.key"), rel(REDIS_ENV), rel(ENVS / "tenant-a.env")]
    ignored = subprocess.run(["git", "check-ignore", *paths], cwd=ROOT, capture_output=True, text=True).stdout.split()
    assert ignored == paths


def _secret_strings() -> list[str]:
    """Every secret value of the instance: the secret rows of every env file, and each private key's first line."""
    secret = {s.name for s in (*envs.TENANT_SETTINGS, *envs.REDIS_SETTINGS) if s.secret}
    # Short values (the UI's login name `ops`) are names, not secrets: they would match by accident.
    values = [v for f in ENVS.glob("*.env") for k, v in read_env(f).items() if k in secret and len(v) >= 16]
    keys = [p.read_text().splitlines()[1] for p in TLS.glob("*.key")]  # first base64 line of each private key
    # The monitoring users' passwords are derived, never written to an env file: search for them too.
    redis_env = read_env(REDIS_ENV)
    users = [acl.EXPORTER_USER, *(naming.metrics_user(t) for t in known_names())]
    return values + keys + [acl.monitoring_password(redis_env, u) for u in users]


def _secret_values() -> list[bytes]:
    return [v.encode() for v in _secret_strings()]


@pytest.fixture(scope="module")
def images_built():
    from tests.support.deployment import invoke

    invoke("init")  # the secrets searched for must exist, whatever ran before
    invoke("build", "--tools", "--monitoring")


@pytest.mark.parametrize("image", [INSTANCE.image(c) for c in COMPONENTS])
def test_no_image_layer_holds_a_secret(image, tmp_path, images_built):
    archive = tmp_path / "image.tar"
    subprocess.run(["docker", "save", "-o", str(archive), image], check=True, capture_output=True)
    needles = _secret_values()
    assert needles
    found = []
    with tarfile.open(archive) as outer:
        for member in outer:
            if not member.isfile():
                continue
            data = outer.extractfile(member).read()
            if member.name.endswith(".tar") or data[257:262] == b"ustar":
                import io
                with tarfile.open(fileobj=io.BytesIO(data)) as layer:
                    for f in layer:
                        if f.isfile():
                            content = layer.extractfile(f).read()
                            if f.name.startswith(("secrets/", "srv/app/secrets")) or any(n in content for n in needles):
                                found.append(f"{member.name}:{f.name}")
            elif any(n in data for n in needles):
                found.append(member.name)
    assert not found, f"secrets found in {image}: {found[:5]}"


EVERY_SERVICE = {naming.REDIS_SERVICE, naming.TOOLS_SERVICE,
                 *(naming.service_name(t, role) for t in ("a", "b") for role in naming.ROLES)}


def _running_containers() -> list[dict]:
    label = f"label=com.docker.compose.project={INSTANCE.compose_project}"
    ids = subprocess.run(["docker", "ps", "-q", "--filter", label], capture_output=True, text=True,
                         check=True).stdout.split()
    out = subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_no_container_environment_or_command_line_holds_a_secret(everything_up):
    containers = _running_containers()
    services = {c["Config"]["Labels"]["com.docker.compose.service"] for c in containers}
    assert services >= EVERY_SERVICE, EVERY_SERVICE - services
    needles = _secret_strings()
    assert len(needles) >= 12  # redis.env's, both tenants' and the private keys
    found = []
    for c in containers:
        config = c["Config"]
        shown = [*(config.get("Env") or []), *(c.get("Args") or []), *(config.get("Cmd") or []),
                 *(config.get("Entrypoint") or []), c.get("Path") or ""]
        found += [f"{c['Name']}: a secret of {len(n)} chars" for n in needles if any(n in item for item in shown)]
    assert not found
    # What the tenant containers get instead: where each secret file is.
    env = d.inspect(d.container(naming.service_name("a", "web")))["Config"]["Env"]
    assert {f"{k}={v}" for k, v in compose.secret_environment().items()} <= set(env)
    assert not [e for e in env if e.split("=", 1)[0] in {s.name for s in compose.FILE_SETTINGS}]


@pytest.mark.parametrize("tenant", ["a", "b"])
def test_each_secret_is_a_file_for_the_app_uid_only(tenant, everything_up):
    values = read_env(env_path(tenant))
    folder = compose.tenant_files_dir(tenant)
    assert folder.stat().st_uid == UIDS["app"] and folder.stat().st_mode & 0o777 == 0o500
    names = {naming.secret_file_name(s.name) for s in compose.FILE_SETTINGS}
    assert {p.name for p in folder.iterdir()} == names
    for s in compose.FILE_SETTINGS:
        path = folder / naming.secret_file_name(s.name)
        st = path.stat()
        assert (st.st_uid, st.st_mode & 0o777) == (UIDS["app"], 0o400), path
        assert path.read_text() == values.get(s.name, "")
    plain = compose.tenant_env_file(tenant).read_text()
    assert not [s.name for s in compose.FILE_SETTINGS if values.get(s.name) and values[s.name] in plain]
    assert f"TENANT={tenant}\n" in plain and "CELERY_TASK_TIME_LIMIT=" in plain


def test_a_tenant_container_sees_its_own_secret_files_only_and_cannot_change_them(everything_up):
    web_a = d.container(naming.service_name("a", "web"))
    listing = subprocess.run(["docker", "exec", web_a, "ls", naming.APP_SECRETS_DIR], capture_output=True, text=True)
    assert set(listing.stdout.split()) == {naming.secret_file_name(s.name) for s in compose.FILE_SETTINGS}
    password = subprocess.run(["docker", "exec", web_a, "cat", f"{naming.APP_SECRETS_DIR}/redis_password"],
                              capture_output=True, text=True).stdout
    assert password == d.tenant_password("a") != d.tenant_password("b")
    write = subprocess.run(["docker", "exec", web_a, "sh", "-c", f"echo x > {naming.APP_SECRETS_DIR}/redis_password"],
                           capture_output=True, text=True)
    assert write.returncode != 0 and "Read-only file system" in write.stderr


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_up_migrates_a_deployment_made_before_secret_files_without_losing_a_secret(everything_up):
    """A deployment from before: env files with secrets, no secrets/tenants/; its next `up` derives them."""
    sources = {t: _digest(env_path(t)) for t in ("a", "b")}
    d.invoke("down", "--tenant", "a", "--tenant", "b")  # new containers: the old ones mount the folder deleted below
    shutil.rmtree(INSTANCE.secrets / "tenants")
    out = d.invoke("up", "--tenant", "a", "--tenant", "b").stdout
    for t in ("a", "b"):
        assert f"derived  {rel(compose.tenant_files_dir(t))}/" in out
        assert _digest(env_path(t)) == sources[t]  # the operator's file is the source, never rewritten
        assert (compose.tenant_files_dir(t) / "redis_password").read_text() == d.tenant_password(t)
        assert d.http("GET", d.web_url(t, "/healthz")) == (200, {"tenant": t, "database": "ok", "broker": "ok"})
    again = d.invoke("up", "--tenant", "a", "--tenant", "b").stdout
    assert "derived" not in again  # nothing changed, nothing rewritten
