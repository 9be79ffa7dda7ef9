"""Read and validate env files: the same files Compose passes with env_file and python-dotenv loads."""
import os
from pathlib import Path

from dotenv import dotenv_values

from deployment.envs import Setting, problems
from deployment.errors import DeploymentError as OpsError


def read_env(path: Path) -> dict[str, str]:
    if not path.exists():
        raise OpsError(f"{rel(path)} is missing: run `./invoke init` to generate it")
    try:
        values = dotenv_values(path)
    except OSError as exc:
        raise OpsError(f"{rel(path)} is unreadable ({exc.strerror}): fix its permissions "
                       "or run `./invoke init --rotate`") from None
    return {k: (v or "") for k, v in values.items()}


def require(values: dict[str, str], table: tuple[Setting, ...], path: Path) -> None:
    """Validate a whole env file against its table (deployment/envs.py), then fail once naming every problem."""
    found = problems(table, values)
    if found:
        raise OpsError(f"{rel(path)}: {'; '.join(found)}")


def redis_settings() -> dict[str, str]:
    """envs/redis.env of this instance, validated against its table."""
    from deployment import envs
    from ops.config.paths import REDIS_ENV

    values = read_env(REDIS_ENV)
    require(values, envs.REDIS_SETTINGS, REDIS_ENV)
    return values


def write_private(path: Path, text: str, mode: int = 0o600) -> None:
    """Write a file that holds secrets: created with its final mode, never world-readable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    with open(tmp, "x", opener=lambda p, f: os.open(p, f, mode)) as fh:
        fh.write(text)
    tmp.replace(path)


def rel(path: Path) -> str:
    from ops.config.paths import ROOT

    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)
