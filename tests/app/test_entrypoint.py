"""app/entrypoint.sh: role dispatch, config check first, migrations serialised by a lock on DATA_DIR."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.app.processes import APP_DIR, PROJECT_DIR, tenant_env

ENTRYPOINT = APP_DIR / "entrypoint.sh"


def entrypoint(args: list[str], env: dict, **kw) -> subprocess.Popen:
    env = {**env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",  # `python` is the venv's
           "TENANTSTACK_PROJECT_DIR": str(PROJECT_DIR)}
    return subprocess.Popen(["sh", str(ENTRYPOINT), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kw)


def finish(proc: subprocess.Popen, timeout: float = 120) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


@pytest.fixture
def fresh_env(local_redis, tmp_path):
    return tenant_env(local_redis, "a", tmp_path)


@pytest.mark.parametrize("args, message", [
    ([], "entrypoint: no role given"),
    (["scheduler"], "entrypoint: unknown role 'scheduler'"),
])
def test_refuses_a_missing_or_unknown_role(fresh_env, args, message):
    code, _, err = finish(entrypoint(args, fresh_env))
    assert code == 64 and err.startswith(message) and "web|worker|beat|manage" in err


@pytest.mark.parametrize("role", ["web", "worker", "beat", "manage"])
def test_config_error_stops_every_role_before_anything_runs(fresh_env, role, tmp_path):
    code, _, err = finish(entrypoint([role], {**fresh_env, "DJANGO_SECRET_KEY": "change-me"}))
    assert code == 78
    assert err.strip().splitlines() == [
        "config error: DJANGO_SECRET_KEY is still the example value 'change-me' in the environment: run ./invoke init"]
    assert not (tmp_path / "db.sqlite3").exists()


def test_concurrent_roles_migrate_one_at_a_time(fresh_env, tmp_path):
    """Three roles of a tenant starting together on an empty volume all get a migrated database."""
    starts = [entrypoint(["manage", "showmigrations", "django_celery_results"], fresh_env) for _ in range(3)]
    results = [finish(proc) for proc in starts]
    for code, out, err in results:
        assert code == 0, err
        assert "[X] 0014_alter_taskresult_status" in out
    applied = sum(out.count("Applying django_celery_results.0001_initial... OK") for _, out, _ in results)
    assert applied == 1, "exactly one role applies the migrations; the others find them done"
    assert (tmp_path / ".migrate.lock").exists() and (tmp_path / "db.sqlite3").exists()
