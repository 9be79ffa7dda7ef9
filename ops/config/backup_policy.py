"""The backup policy of this instance: envs/backup.env read and validated against its table (deployment/envs.py
BACKUP_SETTINGS), or the table's defaults while the file does not exist (`./invoke init` writes it).

Every run of `./invoke backup-schedule` reads it again, so an edit counts from the next run; `./invoke backup`
keeps keep_whole by default and `./invoke up --monitoring` renders BackupMissing's threshold from `every`.
"""
from dataclasses import dataclass
from pathlib import Path

from deployment import envs
from deployment.durations import parse_duration

from .envfile import read_env, rel, require
from .paths import INSTANCE


@dataclass(frozen=True)
class Policy:
    every_seconds: int
    keep_whole: int
    keep_tenant: int
    tenants: tuple[str, ...]  # as written: names, or ("all",)
    copy_command: str
    copy_timeout: int
    source: str  # where it came from, for the run's first line

    @property
    def alert_seconds(self) -> int:
        return envs.backup_alert_seconds(self.every_seconds)


def load(path: Path | None = None) -> Policy:
    """The policy; one OpsError line naming every bad value and its fix (nothing runs on a half-valid policy)."""
    path = path or INSTANCE.backup_env
    if path.exists():
        values = read_env(path)
        require(values, envs.BACKUP_SETTINGS, path)
        source = rel(path)
    else:
        values, source = envs.backup_values(), f"the defaults ({rel(path)} does not exist: `./invoke init` writes it)"
    get = {s.name: envs.value_of(s, values) for s in envs.BACKUP_SETTINGS}
    b = envs.BACKUP
    return Policy(every_seconds=int(parse_duration(get["BACKUP_EVERY"]).total_seconds()),
                  keep_whole=envs.integer(b["BACKUP_KEEP_WHOLE"], get["BACKUP_KEEP_WHOLE"])[0],
                  keep_tenant=envs.integer(b["BACKUP_KEEP_TENANT"], get["BACKUP_KEEP_TENANT"])[0],
                  tenants=envs.items(b["BACKUP_TENANTS"], values.get("BACKUP_TENANTS", ""))[0],
                  copy_command=values.get("BACKUP_COPY_COMMAND", "").strip(),
                  copy_timeout=envs.integer(b["BACKUP_COPY_TIMEOUT_SECONDS"], get["BACKUP_COPY_TIMEOUT_SECONDS"])[0],
                  source=source)

