"""Nothing of secrets/ (or the real env files) is tracked by git or baked into an image layer."""
import subprocess
import tarfile

import pytest

from deployment.instance import COMPONENTS
from ops.config.envfile import read_env, rel
from ops.config.paths import ENVS, INSTANCE, REDIS_ENV, ROOT, TLS


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


def _secret_values() -> list[bytes]:
    values = [v for f in ENVS.glob("*.env") for k, v in read_env(f).items()
              if ("PASSWORD" in k or "SECRET" in k or k.endswith("_COMMAND")) and v]
    keys = [p.read_text().splitlines()[1] for p in TLS.glob("*.key")]  # first base64 line of each private key
    return [v.encode() for v in values + keys]


@pytest.fixture(scope="module")
def images_built():
    from tests.support.deployment import invoke

    invoke("build", "--tools")


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
