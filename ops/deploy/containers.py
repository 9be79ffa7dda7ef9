"""Moving files in and out of containers and volumes through the engine (works while they run or not)."""
import io
import json
import subprocess
import tarfile
import uuid
from pathlib import Path

from ops.config.paths import COMPOSE_PROJECT, INSTANCE
from ops.core.errors import OpsError


def name(service: str) -> str:
    return INSTANCE.container(service)


def volume(short: str) -> str:
    return INSTANCE.volume(short)


def volume_exists(short: str) -> bool:
    return subprocess.run(["docker", "volume", "inspect", volume(short)], capture_output=True).returncode == 0


def ensure_volume(short: str) -> None:
    """Create a project volume the way Compose would (same labels), so Compose adopts it later."""
    if not volume_exists(short):
        subprocess.run(["docker", "volume", "create", "--label", f"com.docker.compose.project={COMPOSE_PROJECT}",
                        "--label", f"com.docker.compose.volume={short}", volume(short)], check=True, capture_output=True)


def is_running(service: str) -> bool:
    out = subprocess.run(["docker", "inspect", "--format", "{{.State.Running}}", name(service)],
                         capture_output=True, text=True)
    return out.returncode == 0 and out.stdout.strip() == "true"


def exec_stream(service: str, argv: list[str], dest, progress=None, chunk: int = 1 << 20) -> int:
    """Run argv in the service's container, copying its stdout into file object `dest`. Returns bytes."""
    proc = subprocess.Popen(["docker", "exec", name(service), *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    total = 0
    while block := proc.stdout.read(chunk):
        dest.write(block)
        total += len(block)
        if progress:
            progress(total)
    err = proc.stderr.read().decode(errors="replace").strip()
    if proc.wait() != 0:
        raise OpsError(f"`{' '.join(argv[:3])}` in {name(service)} failed: {err.splitlines()[-1] if err else 'no output'}")
    return total


def copy_out(service: str, directory: str, members: list[str], dest: Path, progress=None) -> int:
    """tar the members of `directory` inside the running container and unpack them under dest."""
    buf = io.BytesIO()
    size = exec_stream(service, ["tar", "-C", directory, "-cf", "-", *members], buf, progress)
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tar:
        tar.extractall(dest, filter="data")
    return size


def volume_job(image: str, user: str, mounts: dict[str, str], script: str, timeout: float = 1800) -> str:
    """Run a shell script in a throwaway container with the given mounts (host path or volume -> target).

    No --rm: Podman 4.3's Docker API reports exit code 0 for `docker run --rm` whatever happened.
    """
    job = f"{COMPOSE_PROJECT}-job-{uuid.uuid4().hex[:8]}"
    argv = ["docker", "run", "--name", job, "--network", "none", "--user", user, "--entrypoint", "sh"]
    for source, target in mounts.items():
        argv += ["-v", f"{source}:{target}"]
    try:
        run = subprocess.run([*argv, image, "-euc", script], capture_output=True, text=True, timeout=timeout)
        code = json.loads(subprocess.run(["docker", "inspect", "--format", "{{json .State.ExitCode}}", job],
                                         capture_output=True, text=True).stdout or "1")
        if run.returncode != 0 or code != 0:
            last = (run.stderr.strip().splitlines() or ["no output"])[-1]
            raise OpsError(f"volume job in {image} failed (exit {code or run.returncode}): {last}")
        return run.stdout
    finally:
        subprocess.run(["docker", "rm", "-f", "-v", job], capture_output=True)
