"""Install Debian packages non-interactively: only the missing ones, one `apt-get update`, command printed."""
import os
import subprocess


def missing(packages) -> list[str]:
    return [p for p in packages if subprocess.run(["dpkg", "-s", p], capture_output=True).returncode != 0]


def install(packages, log=print) -> list[str]:
    """Install whichever of `packages` are absent; returns what was installed."""
    todo = missing(packages)
    if not todo:
        return []
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "--no-install-recommends", *todo]):
        log("+ " + " ".join(argv))
        subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL)
    return todo
