"""The operator's deployment as a decoy: plant a marker and two backups before the suite, check them after.

  .venv/bin/python .ci/decoy.py plant STATE_FILE   # default instance must be up (./invoke up --tenant a)
  .venv/bin/python .ci/decoy.py check STATE_FILE   # exits 1 naming whatever the test run touched

Checked after `./invoke test`: the marker key and its value, both backups (present and still verifying),
every backup folder that existed, the env files and secrets unchanged, and every service of the default
instance still healthy, in the same containers (same start times).
"""
import hashlib
import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.pop("TENANTSTACK_INSTANCE", None)  # the default instance, as an operator has it

from deployment import naming  # noqa: E402
from ops.config.paths import BACKUPS, ENVS, INSTANCE, SECRETS  # noqa: E402
from ops.data import backup_format  # noqa: E402
from ops.deploy import health, redis_admin  # noqa: E402

MARKER = "ops:ci-decoy"
SERVICES = [naming.REDIS_SERVICE, *(naming.service_name("a", role) for role in naming.ROLES)]


def _digests() -> dict[str, str]:
    files = [p for root in (ENVS, SECRETS) for p in sorted(root.rglob("*")) if p.is_file()]
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _started() -> dict[str, str]:
    out = subprocess.run(["docker", "inspect", "--format", "{{.State.StartedAt}}",
                          *[INSTANCE.container(s) for s in SERVICES]], capture_output=True, text=True, check=True)
    return dict(zip(SERVICES, out.stdout.split(), strict=True))


def plant(state: Path) -> None:
    value = secrets.token_hex(16)
    redis_admin.operator().set(MARKER, value)
    made = []
    for _ in range(2):
        out = subprocess.run([str(ROOT / "invoke"), "backup"], cwd=ROOT, capture_output=True, text=True, check=True)
        made.append(re.search(r"verified in [\d.]+s: (\S+)", out.stdout).group(1).rsplit("/", 1)[-1])
    folders = sorted(p.name for p in BACKUPS.iterdir() if p.is_dir())
    state.write_text(json.dumps({"marker": value, "backups": made, "all_backups": folders,
                                 "files": _digests(), "started": _started()}))
    print(f"decoy: planted {MARKER} and backups {', '.join(made)} on instance {INSTANCE.name}")


def _backup_problems(want: dict) -> list[str]:
    problems = []
    missing = [b for b in want["all_backups"] if not (BACKUPS / b).exists()]
    if missing:
        problems.append(f"backups gone: {', '.join(missing)}")
    for name in want["backups"]:
        if (BACKUPS / name).exists():
            try:
                backup_format.verify(BACKUPS / name, log=lambda m: None)
            except Exception as exc:  # noqa: BLE001 - report whatever broke it
                problems.append(f"backup {name} no longer verifies: {exc}")
    return problems


def check(state: Path) -> int:
    want = json.loads(state.read_text())
    problems = _backup_problems(want)
    got = redis_admin.operator().get(MARKER)
    if got is None or got.decode() != want["marker"]:
        problems.append(f"marker {MARKER} is {got!r}, not what was planted")
    changed = [f for f, h in want["files"].items() if _digests().get(f) != h]
    if changed:
        problems.append(f"env files or secrets changed: {', '.join(changed[:5])}")
    states = health.states(SERVICES)
    unhealthy = {s: st for s, st in states.items() if st != "healthy"}
    if unhealthy:
        problems.append(f"services not healthy: {unhealthy}")
    elif _started() != want["started"]:
        problems.append(f"containers were restarted: {_started()} vs {want['started']}")
    redis_admin.operator().delete(MARKER)
    for p in problems:
        print(f"decoy: FAILED: {p}", file=sys.stderr)
    if not problems:
        print(f"decoy: instance {INSTANCE.name} untouched: marker, {len(want['all_backups'])} backups, env files, "
              f"secrets and {len(SERVICES)} healthy services as they were")
    return 1 if problems else 0


if __name__ == "__main__":
    verb, path = sys.argv[1], Path(sys.argv[2])
    sys.exit(plant(path) or 0 if verb == "plant" else check(path))
