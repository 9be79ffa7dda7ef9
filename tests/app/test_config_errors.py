"""A missing or malformed setting stops every process with ONE `config error:` line, never a traceback."""
import os
import shutil
from pathlib import Path

import pytest

from tenantstack import env
from tests.app.processes import run, tenant_env

ROOT = Path(__file__).resolve().parents[2]
ROLE_COMMANDS = {
    "manage.py": ["-m", "tenantstack.manage", "check"],
    "worker": ["-m", "celery", "-A", "tenantstack.celery", "worker", "--loglevel", "INFO"],
    "beat": ["-m", "celery", "-A", "tenantstack.celery", "beat"],
    "web": ["-m", "gunicorn", "--config", "python:tenantstack.gunicorn_conf"],
    "inspect": ["-m", "celery", "-A", "tenantstack.celery", "inspect", "ping"],
}


def assert_one_config_error(result, *fragments: str) -> str:
    assert result.returncode == env.EXIT_CONFIG, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("config error: "), lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.fixture
def env_file_env(local_redis, tmp_path):
    """An environment whose tenant values come from an env file named by TENANTSTACK_ENV_FILE."""
    data = tmp_path / "data"
    data.mkdir()
    values = tenant_env(local_redis, "a", data)
    env_file = tmp_path / "tenant-a.env"
    file_keys = ["TENANT", "DJANGO_SECRET_KEY", "DJANGO_ADMIN_PASSWORD", "REDIS_PASSWORD", "CELERY_TASK_TIME_LIMIT",
                 "CELERY_VISIBILITY_TIMEOUT", "CELERY_WORKER_CONCURRENCY"]
    env_file.write_text("".join(f"{k}={values.pop(k)}\n" for k in file_keys))
    values["TENANTSTACK_ENV_FILE"] = str(env_file)
    return values, env_file


def rewrite(env_file: Path, **changes) -> None:
    lines = [line for line in env_file.read_text().splitlines() if line.split("=", 1)[0] not in changes]
    lines += [f"{k}={v}" for k, v in changes.items() if v is not None]
    env_file.write_text("\n".join(lines) + "\n")


def test_valid_env_file_passes_the_check(env_file_env):
    values, _ = env_file_env
    result = run(["-m", "tenantstack.env"], values)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


@pytest.mark.parametrize("role", ROLE_COMMANDS)
def test_every_role_stops_with_one_line_naming_variable_and_env_file(role, env_file_env):
    values, env_file = env_file_env
    rewrite(env_file, REDIS_PASSWORD=None)
    result = run(ROLE_COMMANDS[role], values)
    assert_one_config_error(result, f"REDIS_PASSWORD is missing in {env_file}: run ./invoke init")


def test_the_committed_example_env_file_is_refused_naming_every_placeholder(env_file_env, tmp_path):
    values, _ = env_file_env
    example = tmp_path / "tenant-a.env"
    shutil.copy(ROOT / "envs" / "tenant-a.env.example", example)
    for key in ("DJANGO_SECRET_KEY", "REDIS_PASSWORD", "DJANGO_ADMIN_PASSWORD", "TENANT"):
        values.pop(key, None)
    values["TENANTSTACK_ENV_FILE"] = str(example)
    line = assert_one_config_error(run(["-m", "tenantstack.manage", "check"], values), str(example), "'change-me'")
    for key in ("DJANGO_SECRET_KEY", "REDIS_PASSWORD", "DJANGO_ADMIN_PASSWORD"):
        assert key in line


def test_all_problems_are_reported_together(env_file_env):
    values, env_file = env_file_env
    rewrite(env_file, CELERY_TASK_TIME_LIMIT="five", CELERY_WORKER_CONCURRENCY="0", TENANT="Tenant_A")
    line = assert_one_config_error(run(["-m", "tenantstack.manage", "check"], values))
    assert f"CELERY_TASK_TIME_LIMIT='five' is not a whole number in {env_file}" in line
    assert "CELERY_WORKER_CONCURRENCY=0 is out of range" in line
    assert "TENANT='Tenant_A' is not a valid tenant name" in line


def test_visibility_timeout_must_exceed_the_task_time_limit(env_file_env):
    values, env_file = env_file_env
    rewrite(env_file, CELERY_TASK_TIME_LIMIT="300", CELERY_VISIBILITY_TIMEOUT="300")
    assert_one_config_error(run(["-m", "tenantstack.env"], values),
                            "CELERY_VISIBILITY_TIMEOUT=300 is not larger than CELERY_TASK_TIME_LIMIT=300")


def test_missing_tls_file_is_named_with_the_fix(env_file_env, tmp_path):
    values, _ = env_file_env
    values["TLS_CA_FILE"] = str(tmp_path / "nowhere" / "ca.crt")
    assert_one_config_error(run(["-m", "celery", "-A", "tenantstack.celery", "worker"], values),
                            f"TLS_CA_FILE {tmp_path / 'nowhere' / 'ca.crt'} is missing", "./invoke init")


def config_error_as_unprivileged(values: dict) -> tuple[str, int]:
    """The ConfigError reading `values` raises, read as an unprivileged uid (root reads anything), and that uid."""
    as_root = os.geteuid() == 0
    if as_root:  # like the container's 10001: a uid the files' modes really apply to
        os.setegid(65534)
        os.seteuid(65534)
    try:
        with pytest.raises(env.ConfigError) as raised:
            env.read_config(values)
    finally:
        if as_root:
            os.seteuid(0)
            os.setegid(0)
    return str(raised.value), 65534 if as_root else os.geteuid()


def test_unreadable_tls_key_is_named_with_the_uid(local_redis, world_readable_dir):
    values = tenant_env(local_redis, "a", world_readable_dir)
    for name in ("TLS_CA_FILE", "TLS_CERT_FILE", "TLS_KEY_FILE"):
        copy = world_readable_dir / Path(values[name]).name
        shutil.copy(values[name], copy)
        copy.chmod(0o644)
        values[name] = str(copy)
    key = Path(values["TLS_KEY_FILE"])
    key.chmod(0)
    world_readable_dir.chmod(0o777)  # DATA_DIR must be writable for the unprivileged uid too
    problems, uid = config_error_as_unprivileged(values)
    assert problems == f"TLS_KEY_FILE {key} is not readable by uid {uid} (Permission denied): {env.TLS_FIX}"


def test_a_bad_database_url_is_refused_without_echoing_its_password(env_file_env):
    values, _ = env_file_env
    values["DATABASE_URL"] = "mongodb://user:hunter2-secret@db/x"
    result = run(["-m", "tenantstack.env"], values)
    line = assert_one_config_error(result, "DATABASE_URL (scheme mongodb) is not a database URL")
    assert "hunter2-secret" not in line


def test_env_file_does_not_override_variables_already_set(env_file_env):
    values, _ = env_file_env
    result = run(["-c", "from tenantstack import env; print(env.load().worker_concurrency)"],
                 {**values, "CELERY_WORKER_CONCURRENCY": "7"})
    assert result.stdout.strip() == "7", result.stderr


def test_defaults_for_optional_settings(local_redis, tmp_path):
    values = tenant_env(local_redis, "a", tmp_path)
    for key in ("CELERY_TASK_TIME_LIMIT", "CELERY_VISIBILITY_TIMEOUT", "CELERY_WORKER_CONCURRENCY",
                "DJANGO_ALLOWED_HOSTS", "DJANGO_ADMIN_PASSWORD"):
        values.pop(key)
    config = env.read_config(values)
    assert (config.task_time_limit, config.visibility_timeout, config.worker_concurrency) == (300, 3600, 2)
    assert config.worker_prefetch_multiplier == 1
    assert 0 < config.soft_time_limit < config.task_time_limit
    assert config.allowed_hosts == ("127.0.0.1", "localhost", "tenant-a-web")
    assert config.sqlite_path == tmp_path / "db.sqlite3"
    assert config.admin_password == ""


def test_a_bad_broadcast_queue_name_is_one_line_naming_item_and_fix(env_file_env):
    from deployment import envs

    values, env_file = env_file_env
    rewrite(env_file, CELERY_BROADCAST_QUEUES="reload,x*")
    assert_one_config_error(run(["-m", "tenantstack.env"], values), "CELERY_BROADCAST_QUEUES item 'x*' is not valid",
                            str(env_file), envs.TENANT["CELERY_BROADCAST_QUEUES"].fix)
