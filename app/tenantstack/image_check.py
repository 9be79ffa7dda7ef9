"""`python -m tenantstack.image_check [--json]`: does this image still run what the deployment pins?

kombu's Lua scripts (and Celery's chord scripts, for the results role) are allowed in each tenant's ACL by SHA-1
(deployment/lua.py), and the command lists were recorded with one kombu, Celery and redis-py: a project whose
requirements pulled other versions would be refused by the server at run time, in the middle of a task. Run by
`tenantstack-finish` at build time (exit 1, one line) and by `./invoke up` before starting a tenant (--json: the
facts, compared with the host's own).
"""
import json
import sys
from importlib import metadata

from deployment import lua
from deployment.errors import DeploymentError

# Pinned in requirements/app-constraints.txt: kombu and redis-py (the ACL), psycopg with its binary build (it loads
# that build only at its own version; the runtime image has no libpq for the fallback).
PINNED = ("kombu", "redis", "psycopg", "psycopg-binary")


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:  # a project that removed it: named as a changed pin below
        return None


def _scripts(read) -> list[str]:
    """The SHA-1s `read` finds, or none when this kombu/Celery keeps its scripts elsewhere (then they differ)."""
    try:
        return sorted(read())
    except DeploymentError:
        return []


def facts() -> dict:
    return {"versions": {name: _version(name) for name in (*PINNED, "celery", "Django")},
            "kombu_scripts": _scripts(lua.kombu_scripts), "celery_scripts": _scripts(lua.celery_chord_scripts)}


def main(argv: list[str]) -> int:
    found = facts()
    if argv[:1] == ["--json"]:
        print(json.dumps(found))
        return 0
    pins = {}
    with open("/opt/tenantstack/constraints.txt", encoding="utf-8") as fh:
        for line in fh:
            name, sep, version = line.split("#")[0].strip().partition("==")
            if sep:
                pins[name] = version
    wrong = [f"{n} {_version(n)} (pinned {v})" for n, v in pins.items() if _version(n) != v]
    if wrong:
        print(f"image error: the project's requirements changed {', '.join(wrong)}: remove those pins from its "
              "requirements.txt (README, Bring your own project)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
