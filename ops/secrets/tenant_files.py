"""A tenant's settings as its containers get them: an env file without secrets, and one file per secret.

envs/tenant-<name>.env stays the operator's one source of truth (existing deployments keep theirs). From
it, under secrets/tenants/<name>/ (deployment/instance.py `tenant_secrets`), are derived:
  app.env        every setting not marked `as_file` in deployment/envs.py: what Compose passes with env_file
                 (ops/deploy/compose.py rewrites it with the generated Compose file, so it never drifts)
  files/<name>   one file per `as_file` setting (every secret, and DATABASE_URL which may embed a password),
                 owned by the app's UID, mode 0400, in a folder only that UID may enter; mounted read-only at
                 naming.APP_SECRETS_DIR, while the containers' environment holds only NAME_FILE=<its path>
so `docker inspect` of a tenant container shows no secret value. The secret files are written by
`./invoke init`, `up` and `tenant-add` (they need root, to give them to the app's UID). A deployment made
before these files existed is migrated by its next `up`: the values come from the same env file, so no
secret is lost or changed, and Redis' ACL (also derived from that file) keeps matching.
"""
import os
import shutil
from pathlib import Path

from deployment import naming
from deployment.instance import UIDS
from ops.config import tenants
from ops.config.envfile import rel, write_private
from ops.config.paths import INSTANCE
from ops.deploy import compose

FILE_SETTINGS = compose.FILE_SETTINGS
env_file, files_dir = compose.tenant_env_file, compose.tenant_files_dir  # paths: one owner, compose.py


def _owned_as(path: Path, uid: int, mode: int) -> bool:
    st = path.stat()
    return st.st_uid == uid and (st.st_mode & 0o777) == mode


def write(name: str) -> list[str]:
    """Write the tenant's app.env and secret files from its (validated) env file; report what changed."""
    declared = tenants.declared(name)  # read once
    values = declared.values
    compose.write_tenant_env(declared)
    uid = UIDS["app"]
    folder = files_dir(name)
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(INSTANCE.tenant_secrets(name), 0o700)
    changed = []
    for s in FILE_SETTINGS:
        path = folder / naming.secret_file_name(s.name)
        value = values.get(s.name, "")
        if path.exists() and _owned_as(path, uid, 0o400) and path.read_text() == value:
            continue
        write_private(path, value, mode=0o400)  # the exact value: no newline to strip or forget
        os.chown(path, uid, uid)
        changed.append(path.name)
    wanted = {naming.secret_file_name(s.name) for s in FILE_SETTINGS}
    stale = [p for p in folder.iterdir() if p.name not in wanted]  # a removed row, or a crashed write's .tmp
    for p in stale:
        p.unlink()
    # The folder last: only the app's UID may enter it (the files are its own, 0400).
    os.chown(folder, uid, uid)
    os.chmod(folder, 0o500)
    if not changed and not stale:
        return []
    what = ", ".join(changed) or "stale files removed"
    return [f"derived  {rel(folder)}/ ({what}) from {rel(tenants.env_path(name))}"]


def write_all(names, changed: list[str] | None = None) -> list[str]:
    """write() every tenant; remove what was derived for tenants that no longer exist. The tenants whose files
    changed are appended to `changed`: their running processes still hold the old secrets."""
    report = []
    for name in names:
        lines = write(name)
        if lines and changed is not None:
            changed.append(name)
        report += lines
    root = INSTANCE.secrets / "tenants"
    if root.is_dir():
        for folder in root.iterdir():
            if folder.is_dir() and folder.name not in names:
                shutil.rmtree(folder)
                report.append(f"removed  {rel(folder)}/ (tenant {folder.name} is gone)")
    return report
