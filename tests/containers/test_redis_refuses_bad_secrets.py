"""The redis container refuses to start on bad secrets, with one line per problem naming the file."""
import shutil
import subprocess

import pytest

from deployment import lua
from ops.config.paths import INSTANCE, REDIS_CONF, REDIS_SECRETS, TLS
from ops.secrets import tls

IMAGE = INSTANCE.image("redis")
STARTCHECK = INSTANCE.container("startcheck")


@pytest.fixture
def secret_dir(tmp_path, redis_up):
    """A copy of the real Redis secrets, readable by the container's redis user, to break one by one."""
    d = tmp_path / "s"
    (d / "tls").mkdir(parents=True)
    (d / "redis").mkdir()
    shutil.copy(TLS / "ca.crt", d / "tls" / "ca.crt")
    shutil.copy(TLS / "redis.crt", d / "tls" / "server.crt")
    shutil.copy(TLS / "redis.key", d / "tls" / "server.key")
    for f in ("auth.conf", "health.pass", lua.LOAD_FILE, lua.EXPECT_FILE):
        shutil.copy(REDIS_SECRETS / f, d / "redis" / f)
    subprocess.run(["chown", "-R", "999:999", str(d)], check=True)
    return d


def _start(d) -> subprocess.CompletedProcess:
    mounts = ["-v", f"{REDIS_CONF}:/etc/redis/redis.conf:ro", "-v", f"{d}/redis:/run/secrets/redis:ro"]
    for f in ("ca.crt", "server.crt", "server.key"):
        if (d / "tls" / f).exists():
            mounts += ["-v", f"{d}/tls/{f}:/run/secrets/tls/{f}:ro"]
    # No --rm: Podman 4.3's Docker API reports exit code 0 for `docker run --rm` whatever the container returned.
    name = INSTANCE.container("startcheck-refused")  # the test instance's name: concurrent runs never collide
    subprocess.run(["docker", "rm", "-f", "-v", name], capture_output=True)
    try:
        return subprocess.run(["docker", "run", "--name", name, "--network", "none", *mounts, IMAGE],
                              capture_output=True, text=True, timeout=60)
    finally:
        subprocess.run(["docker", "rm", "-f", "-v", name], capture_output=True)


def test_mismatched_certificate_and_key_stop_startup(secret_dir, tmp_path):
    tls.make_leaf(TLS / "ca.crt", TLS / "ca.key", tmp_path / "other.crt", tmp_path / "other.key", "redis", server=True)
    shutil.copy(tmp_path / "other.crt", secret_dir / "tls" / "server.crt")
    run = _start(secret_dir)
    assert run.returncode == 78
    assert run.stderr.strip() == ("redis: /run/secrets/tls/server.crt does not match /run/secrets/tls/server.key: "
                                  "run `./invoke init` on the host (`./invoke init --rotate` to reissue)")


def test_missing_and_unreadable_secrets_are_all_named(secret_dir):
    (secret_dir / "tls" / "server.key").unlink()
    (secret_dir / "redis" / "health.pass").chmod(0o000)
    subprocess.run(["chown", "0:0", str(secret_dir / "redis" / "health.pass")], check=True)
    run = _start(secret_dir)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 78
    fix = "run `./invoke init` on the host (`./invoke init --rotate` to reissue)"
    assert lines == [f"redis: /run/secrets/tls/server.key is missing: {fix}",
                     f"redis: /run/secrets/redis/health.pass is not readable by uid 999: {fix}"]


def test_example_password_stops_startup(secret_dir):
    conf = secret_dir / "redis" / "auth.conf"
    conf.chmod(0o600)
    text = conf.read_text().splitlines()
    lines = ["requirepass change-me" if line.startswith("requirepass") else line for line in text]
    conf.write_text("\n".join(lines) + "\n")
    run = _start(secret_dir)
    assert run.returncode == 78 and "holds an example password" in run.stderr


def test_good_secrets_start(secret_dir):
    proc = subprocess.Popen(["docker", "run", "--rm", "--name", STARTCHECK, "--network", "none",
                             "-v", f"{REDIS_CONF}:/etc/redis/redis.conf:ro",
                             "-v", f"{secret_dir}/redis:/run/secrets/redis:ro",
                             *sum((["-v", f"{secret_dir}/tls/{f}:/run/secrets/tls/{f}:ro"]
                                   for f in ("ca.crt", "server.crt", "server.key")), []), IMAGE],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for line in proc.stdout:
            if "Ready to accept connections" in line:
                break
        else:
            pytest.fail("redis did not start with good secrets")
    finally:
        subprocess.run(["docker", "rm", "-f", "-v", STARTCHECK], capture_output=True)
        proc.wait(30)
