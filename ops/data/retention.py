"""Retention: which verified backups stay. The one pruner, for `./invoke backup --keep` and `backup-schedule`.

Kept: the N newest whole backups backups/<stamp>/ and the M newest of each tenant's backups/tenant-<t>/<stamp>/
(envs/backup.env BACKUP_KEEP_WHOLE and BACKUP_KEEP_TENANT). Never touched: backups/archives/ (what tenant-remove
kept of a removed tenant), .partial folders (backup_format.sweep_partials' job), restore's pre-restore copies and
anything else not named like a backup, and any folder without manifest.json.

Only complete backups are counted and removed; a backup is renamed into place only after it verified, so with
N >= 1 an old backup goes only once N newer ones verified, whatever failed since. Callers hold the instance's
lock (journal.locked / operation): never prune while a restore reads an old backup.
"""
import shutil
from pathlib import Path

from deployment import naming
from ops.config.envfile import rel
from ops.config.paths import BACKUPS
from ops.core.errors import OpsError
from ops.data import backup_format as fmt

ARCHIVES = BACKUPS / fmt.ARCHIVES


def complete(folder: Path) -> list[Path]:
    """The complete backups directly in folder (named by their UTC stamp, with a manifest), oldest first."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink()
                  and fmt.STAMP_RE.match(p.name) and (p / "manifest.json").exists())


def tenant_folders() -> dict[str, Path]:
    """tenant -> backups/tenant-<t>/ for every such folder (the tenant may be gone: its backups are still pruned)."""
    if not BACKUPS.is_dir():
        return {}
    found = {}
    for p in sorted(BACKUPS.iterdir()):
        if naming.is_backup_folder(p.name) and p.is_dir() and not p.is_symlink():
            found[naming.tenant_of(p.name)] = p
    return found


def prune(folder: Path, keep: int, what: str, log=print) -> list[Path]:
    """Remove all but the `keep` newest complete backups in folder; returns what was removed."""
    if keep < 1:
        raise OpsError(f"keeping {keep} {what} backups would remove the newest verified one: keep at least 1")
    resolved = folder.resolve()
    if resolved == ARCHIVES.resolve() or ARCHIVES.resolve() in resolved.parents:
        raise OpsError(f"{rel(folder)} is under {rel(ARCHIVES)}, which is never pruned")  # a bug, said plainly
    removed = []
    for old in complete(folder)[:-keep]:
        shutil.rmtree(old)
        removed.append(old)
        log(f"retention: removed {what} backup {rel(old)} (keeping the {keep} newest)")
    return removed


def prune_whole(keep: int, log=print) -> list[Path]:
    return prune(BACKUPS, keep, "whole", log)


def prune_tenants(keep: int, log=print) -> list[Path]:
    """Each tenant's own backups down to its `keep` newest."""
    return [p for name, folder in tenant_folders().items() for p in prune(folder, keep, f"tenant {name}'s", log)]
