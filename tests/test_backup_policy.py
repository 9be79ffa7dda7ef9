"""The backup policy (envs/backup.env): its example is what the table renders, a bad file is refused in one line that
names every bad value and its fix, and the copy command's {path} stays one argument whatever the path holds."""
import pytest

from deployment import envs
from deployment.errors import DeploymentError
from ops.config import backup_policy
from ops.config.paths import BACKUPS, ROOT
from ops.data import schedule


def test_committed_backup_example_is_exactly_what_the_table_renders_and_loads_as_the_defaults(tmp_path):
    assert (ROOT / "envs" / "backup.env.example").read_text() == envs.render_backup_example()
    assert not [s.name for s in envs.BACKUP_SETTINGS if s.secret]
    path = tmp_path / "backup.env"
    path.write_text(envs.render_backup_example())
    policy = backup_policy.load(path)
    assert (policy.every_seconds, policy.keep_whole, policy.keep_tenant, policy.tenants, policy.copy_command) == (
        86400, 7, 7, (), "")
    assert policy.alert_seconds == 49 * 3600  # BackupMissing: two missed runs and an hour


def test_every_bad_value_is_named_with_its_fix_in_one_line(tmp_path):
    bad = {"BACKUP_EVERY": "soon", "BACKUP_KEEP_WHOLE": "0", "BACKUP_KEEP_TENANT": "many", "BACKUP_TENANTS": "a,B!",
           "BACKUP_COPY_COMMAND": "rsync -a {path} '/mnt/off site", "BACKUP_COPY_TIMEOUT_SECONDS": "-5"}
    path = tmp_path / "backup.env"
    path.write_text("".join(f'{k}="{v}"\n' for k, v in bad.items()))
    with pytest.raises(DeploymentError) as exc:
        backup_policy.load(path)
    said = str(exc.value)
    assert "\n" not in said and said.startswith(str(path))
    for name in bad:
        assert name in said and envs.BACKUP[name].fix in said, (name, said)


def test_an_unknown_placeholder_in_the_copy_command_is_refused(tmp_path):
    path = tmp_path / "backup.env"
    path.write_text("BACKUP_COPY_COMMAND=rclone copy {path} remote:bk/{stamp}\n")
    with pytest.raises(DeploymentError, match=r"BACKUP_COPY_COMMAND uses \{stamp\}, which is not substituted"):
        backup_policy.load(path)


def test_the_copy_command_gets_the_backup_as_one_word_never_through_a_shell():
    path = BACKUPS / "tenant-b" / "20260101T020000Z"
    argv = schedule.copy_argv("rclone copy {path} 'remote:bk/{name}' --log-file=/var/log/{name}.log", path)
    assert argv == ["rclone", "copy", str(path), "remote:bk/tenant-b/20260101T020000Z",
                    "--log-file=/var/log/tenant-b/20260101T020000Z.log"]
    odd = BACKUPS / "20260101T020000Z; rm -rf ~ $(id)"  # never a backup's name, but nothing in it is read as syntax
    assert schedule.copy_argv("rsync -a {path} /mnt/offsite/", odd) == ["rsync", "-a", str(odd), "/mnt/offsite/"]
