"""The fast tests' server is the one that ships: the server image's Valkey 8.1, not a host package."""
import subprocess

from tests.support import image_rootfs


def test_the_fast_server_reports_valkey_8_1(local_redis):
    info = local_redis.client().info("server")
    assert info["server_name"] == "valkey", info
    assert str(info["valkey_version"]).startswith("8.1."), info
    # Valkey's compatibility number, which clients such as redis-py and kombu read.
    assert str(info["redis_version"]).startswith("7.2."), info


def test_the_fast_server_is_the_server_images_own_binary(local_redis):
    """Same bytes as the image's /usr/bin/valkey-server: the version line names the build of each."""
    argv = image_rootfs.argv("redis", "valkey-server")
    assert str(image_rootfs.rootfs("redis")) in argv[-1]
    shipped = subprocess.run([*argv, "--version"], capture_output=True, text=True, timeout=30).stdout
    in_image = subprocess.run(["docker", "run", "--rm", "--network", "none", "--entrypoint", "valkey-server",
                               image_rootfs.image("redis"), "--version"], capture_output=True, text=True,
                              timeout=60).stdout
    assert shipped and shipped == in_image, (shipped, in_image)
    # The running server's build id (a hash of its build) is the image binary's.
    build = dict(part.split("=", 1) for part in shipped.split() if "=" in part)["build"]
    assert local_redis.client().info("server")["redis_build_id"] == build
