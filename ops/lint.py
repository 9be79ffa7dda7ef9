"""`invoke lint`: every linter the project keeps clean, each with its committed configuration.

  ruff         Python (ruff.toml: rule set, and every disabled rule with its reason)
  shellcheck   shell scripts (Debian's shellcheck; installed when missing and root)
  hadolint     Dockerfiles (.hadolint.yaml: ignored rules with their reasons)
  yamllint     Compose files, the instance's generated one included (.yamllint.yaml)
  compose-spec every Compose file against the Compose specification (check-jsonschema's vendored schema)

Sits above every layer of ops: it regenerates the instance's tenant file to lint what Compose really reads.
"""
import os
import shutil
import sys
from pathlib import Path

from ops.config.paths import ROOT, TENANTS_GENERATED
from ops.core.errors import OpsError
from ops.core.run import probe
from ops.deploy import compose
from ops.engine import apt

BIN = Path(sys.executable).parent  # the project's virtualenv: ruff, hadolint, yamllint, check-jsonschema


def _tracked(*patterns: str) -> list[str]:
    out = probe(["git", "ls-files", *patterns], cwd=ROOT)
    return [f for f in out.stdout.split() if "node_modules" not in f]


def _shellcheck() -> str:
    if not shutil.which("shellcheck"):
        if os.geteuid() != 0:
            raise OpsError("shellcheck is missing: run `sudo apt-get install -y shellcheck`")
        apt.install(["shellcheck"], log=lambda m: print(m, flush=True))
    return "shellcheck"


def checks() -> list[tuple[str, list[str]]]:
    compose.generate()
    compose_files = [*_tracked("compose/*.yaml"), str(TENANTS_GENERATED)]
    return [
        ("ruff", [str(BIN / "ruff"), "check", "--no-cache", "."]),
        ("shellcheck", [_shellcheck(), *_tracked("*.sh"), ".ci/run", "invoke"]),
        ("hadolint", [str(BIN / "hadolint"), "--config", ".hadolint.yaml", *_tracked("*Dockerfile")]),
        ("yamllint", [str(BIN / "yamllint"), "--strict", "-c", ".yamllint.yaml", *compose_files, ".yamllint.yaml",
                      ".hadolint.yaml"]),
        ("compose-spec", [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", *compose_files]),
    ]


def run_all(log=print) -> list[str]:
    """Run every check, showing its findings; returns the names of those that found something."""
    failed = []
    for name, argv in checks():
        done = probe(argv, cwd=ROOT)
        output = (done.stdout + done.stderr).strip()
        if done.returncode == 0:
            log(f"lint: {name}: clean")
        else:
            failed.append(name)
            log(output)
            log(f"lint: {name}: findings above (exit {done.returncode})")
    return failed
