"""What every deployed container stands on: Debian 13 images, the Valkey 8.1 server, Python 3.13 in the app."""
import subprocess

from tests.support import deployment as d


def _exec(service: str, *argv: str) -> str:
    out = subprocess.run(["docker", "exec", d.container(service), *argv], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_server_and_tenant_containers_are_debian_13(tenants_up):
    for service in ("redis", "tenant-a-web", "tenant-a-worker", "tenant-b-beat"):
        release = dict(line.split("=", 1) for line in _exec(service, "cat", "/etc/os-release").splitlines()
                       if "=" in line)
        assert release["VERSION_ID"].strip('"') == "13", (service, release)


def test_the_deployed_server_is_valkey_8_1(tenants_up):
    info = d.client().info("server")
    assert info["server_name"] == "valkey" and str(info["valkey_version"]).startswith("8.1."), info


def test_the_app_runs_python_3_13(tenants_up):
    version = _exec("tenant-a-worker", "python", "-c", "import sys; print(sys.version_info[:2])")
    assert version.strip() == "(3, 13)", version
