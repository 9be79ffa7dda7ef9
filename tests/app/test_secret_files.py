"""Secrets as files: NAME_FILE (what the containers get) wins over NAME; a bad file is one `config error:` line."""

import pytest

from deployment import envs, naming
from tenantstack import env
from tests.app.processes import run, tenant_env
from tests.app.tenant_apps import tenant_app
from tests.app.test_broker_tls import ping_broker
from tests.app.test_config_errors import assert_one_config_error, config_error_as_unprivileged

SECRETS = [s.name for s in envs.TENANT_SETTINGS if s.secret]


@pytest.fixture
def file_env(local_redis, tmp_path):
    """A valid environment in the containers' form: no secret variable, one file per secret."""
    data = tmp_path / "data"
    data.mkdir()
    values = tenant_env(local_redis, "a", data)
    folder = tmp_path / "secrets"
    folder.mkdir()
    for key in SECRETS:
        path = folder / naming.secret_file_name(key)
        path.write_text(values.pop(key))
        values[naming.secret_file_var(key)] = str(path)
    return values, folder


def test_every_table_secret_is_delivered_as_a_file():
    assert set(SECRETS) == {"DJANGO_SECRET_KEY", "DJANGO_ADMIN_PASSWORD", "REDIS_PASSWORD", "DATABASE_PASSWORD"}
    assert {s.name for s in envs.TENANT_SETTINGS if s.as_file} == {*SECRETS, "DATABASE_URL"}


def test_secrets_are_read_from_their_files(file_env):
    values, folder = file_env
    config = env.read_config(values)
    assert config.redis_password == (folder / "redis_password").read_text()
    assert config.secret_key == (folder / "django_secret_key").read_text()
    assert config.admin_password == (folder / "django_admin_password").read_text()
    # ... and that password is the one Redis accepts for the tenant.
    assert ping_broker(tenant_app(config)) is True
    # A real process started the containers' way passes the check.
    result = run(["-m", "tenantstack.env"], values)
    assert (result.returncode, result.stderr) == (0, "")


def test_the_file_wins_over_the_variable(file_env):
    values, folder = file_env
    (folder / "redis_password").write_text("from-the-file\n")  # a trailing newline is not part of the secret
    config = env.read_config({**values, "REDIS_PASSWORD": "from-the-variable"})
    assert config.redis_password == "from-the-file"


def test_an_empty_optional_file_means_unset(file_env):
    values, folder = file_env
    (folder / "django_admin_password").write_text("")
    url = folder / "database_url"
    url.write_text("")
    config = env.read_config({**values, "DATABASE_URL_FILE": str(url)})
    assert (config.admin_password, config.database_url) == ("", "")


@pytest.mark.parametrize("role", ["-m", "tenantstack.manage", "worker"])
def test_a_missing_secret_file_is_one_line_naming_variable_and_file(file_env, role):
    values, folder = file_env
    (folder / "redis_password").unlink()
    argv = ["-m", "tenantstack.manage", "check"] if role == "manage.py" else \
        ["-m", "celery", "-A", "tenantstack.celery", "worker"]
    line = assert_one_config_error(run(argv, values),
                                   f"REDIS_PASSWORD_FILE {folder / 'redis_password'} is missing: run ./invoke up")
    assert naming.APP_SECRETS_DIR in line and "REDIS_PASSWORD is missing" not in line


def test_an_unreadable_secret_file_is_one_line_naming_the_uid(file_env, world_readable_dir):
    values, _ = file_env
    key = world_readable_dir / "redis_password"
    key.write_text("secret")
    key.chmod(0)
    admin = world_readable_dir / "django_admin_password"  # readable: only the two bad files are reported
    admin.write_text("fine")
    admin.chmod(0o644)
    values.update(REDIS_PASSWORD_FILE=str(key), DJANGO_SECRET_KEY_FILE=str(world_readable_dir),  # a folder
                  DJANGO_ADMIN_PASSWORD_FILE=str(admin))
    problems, uid = config_error_as_unprivileged(values)
    assert f"REDIS_PASSWORD_FILE {key} is not readable by uid {uid} (Permission denied): run ./invoke up" in problems
    assert f"DJANGO_SECRET_KEY_FILE {world_readable_dir} is a directory, not a file: run ./invoke up" in problems


def test_the_example_value_in_a_file_is_refused(file_env):
    values, folder = file_env
    (folder / "django_secret_key").write_text(envs.PLACEHOLDER)
    assert_one_config_error(run(["-m", "tenantstack.env"], values),
                            f"DJANGO_SECRET_KEY is still the example value '{envs.PLACEHOLDER}'")
