"""Read and validate env files: the same files Compose passes with env_file and python-dotenv loads."""
from pathlib import Path

from dotenv import dotenv_values

from .errors import OpsError

EXAMPLE_VALUE = "change-me"  # placeholder in committed *.env.example files; never valid in a real env file


def read_env(path: Path) -> dict[str, str]:
    if not path.exists():
        raise OpsError(f"{rel(path)} is missing: run `./invoke init` to generate it")
    try:
        values = dotenv_values(path)
    except OSError as exc:
        raise OpsError(f"{rel(path)} is unreadable ({exc.strerror}): fix its permissions or run `./invoke init --rotate`")
    return {k: (v or "") for k, v in values.items()}


def require(values: dict[str, str], keys: list[str], path: Path) -> None:
    """Collect every missing or example-valued key, then fail once naming them all."""
    missing = [k for k in keys if not values.get(k)]
    placeholders = [k for k in keys if values.get(k) == EXAMPLE_VALUE]
    problems = []
    if missing:
        problems.append(f"missing {', '.join(missing)}")
    if placeholders:
        problems.append(f"{', '.join(placeholders)} still at the example value '{EXAMPLE_VALUE}'")
    if problems:
        raise OpsError(f"{rel(path)}: {'; '.join(problems)}: run `./invoke init` to generate real values")


def render(values: dict[str, str], header: str) -> str:
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    lines += [f"{k}={v}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def write_private(path: Path, text: str, mode: int = 0o600) -> None:
    """Write a file that holds secrets: created with its final mode, never world-readable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    with open(tmp, "x", opener=lambda p, f: __import__("os").open(p, f, mode)) as fh:
        fh.write(text)
    tmp.replace(path)


def rel(path: Path) -> str:
    from .paths import ROOT

    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)
