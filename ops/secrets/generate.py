"""`invoke init`: generate every secret the instance needs, keep what exists, then apply the ACL rules.

Sources of truth, all git-ignored, per instance (deployment/instance.py says where):
  envs/redis.env, envs/tenant-<name>.env   passwords and renamed command names (rows: deployment/envs.py)
  secrets/tls/                              private CA, server and client certificates
Derived on every run (never edited by hand):
  secrets/redis/auth.conf, health.pass, secrets/commander/settings.json   by ops/secrets/acl.py
  secrets/tenants/<name>/app.env, files/*   by ops/secrets/tenant_files.py: what the tenant's containers get
"""
import os
import secrets as pysecrets
from pathlib import Path

from deployment import acl, envs, naming
from deployment.instance import UIDS
from ops.config import tenants
from ops.config.envfile import read_env, redis_settings, rel, write_private
from ops.config.paths import INSTANCE, REDIS_AUTH_CONF, REDIS_ENV, TLS
from ops.core.errors import OpsError
from ops.secrets import tenant_files, tls

__all__ = ["certificate_names", "check_all", "generate", "init", "missing"]


def generate(key: str) -> str:
    """A fresh value for a secret setting."""
    if key.endswith("_COMMAND"):
        return f"{key.split('_')[1]}_{pysecrets.token_hex(12)}"  # e.g. CONFIG_3f9a…: unguessable, still greppable
    if key == "COMMANDER_HTTP_USER":
        return "ops"
    return pysecrets.token_urlsafe(32)


def _write_env(path: Path, table, values: dict[str, str], header: str, rotate: bool, report: list[str]) -> None:
    """Write `path` with every secret of `table` generated; keep an existing file unless rotating."""
    existed = path.exists()
    if existed and not rotate:
        # A row added to the table since (a new secret, e.g. REDIS_MONITORING_SECRET): generated, the rest kept.
        absent = [s.name for s in table if s.secret and s.required and not values.get(s.name)]
        if absent:
            write_private(path, envs.render(table, {**values, **{k: generate(k) for k in absent}}, header))
        report.append(f"kept     {rel(path)}" + (f" (added {', '.join(absent)})" if absent else ""))
        return
    secret_names = {s.name for s in table if s.secret}
    values = {k: (generate(k) if k in secret_names else v) for k, v in values.items()}
    write_private(path, envs.render(table, values, header))
    report.append(f"{'rotated ' if existed else 'created '} {rel(path)}")


def tenant_values_for(name: str) -> dict[str, str]:
    """What a tenant's env file starts from: its current file, else its example shifted into this instance's block."""
    if tenants.env_path(name).exists():
        return read_env(tenants.env_path(name))
    example = tenants.example_path(name)
    if not example.exists():
        raise OpsError(f"{rel(tenants.env_path(name))} is missing and has no example: "
                       f"re-create it with `./invoke tenant-add {name}`")
    values = read_env(example)
    values["WEB_PORT"] = str(INSTANCE.web_port_from_example(int(values.get("WEB_PORT") or 0)))
    return values


def _tls_files(cn: str) -> tuple[Path, Path]:
    return TLS / f"{cn}.crt", TLS / f"{cn}.key"


def certificate_names(tenant_names) -> dict[str, bool]:
    """Every certificate the deployment uses: name -> is it the server's."""
    # PostgreSQL's server certificate is issued for every instance (cheap), so a tenant moving to it needs no init.
    names = {naming.REDIS_SERVICE: True, naming.POSTGRES_SERVICE: True, "client": False, "commander": False,
             acl.EXPORTER_USER: False}
    for t in tenant_names:
        names.update({naming.redis_user(t): False, naming.metrics_user(t): False})
    return names


def _ensure_tls(tenant_names, rotate: bool, report: list[str]) -> None:
    ca_crt, ca_key = _tls_files("ca")
    if rotate or not (ca_crt.exists() and ca_key.exists()):
        tls.make_ca(ca_crt, ca_key)
        report.append(f"created  {rel(ca_crt)} (new CA: every certificate is reissued)")
        rotate = True
    else:
        report.append(f"kept     {rel(ca_crt)}")
    for cn, server in certificate_names(tenant_names).items():
        crt, key = _tls_files(cn)
        if crt.exists() and key.exists() and not rotate:
            report.append(f"kept     {rel(crt)}")
            continue
        tls.make_leaf(ca_crt, ca_key, crt, key, cn, server=server)
        report.append(f"created  {rel(crt)}")


def issue_tenant_certificate(name: str) -> Path:
    """The tenant's client certificate, and its metrics exporter's (both presented by the app image's UID)."""
    for cn in (naming.redis_user(name), naming.metrics_user(name)):
        crt, key = _tls_files(cn)
        tls.make_leaf(TLS / "ca.crt", TLS / "ca.key", crt, key, cn)
        give_key(cn, UIDS["app"])
    return _tls_files(naming.redis_user(name))[0]


def give_key(cn: str, uid: int) -> None:
    """A private key readable only by the container user that presents it (bind mounts keep host owners)."""
    key = _tls_files(cn)[1]
    os.chown(key, uid, uid)
    os.chmod(key, 0o400)


def _chown_keys(tenant_names) -> None:
    owners = {naming.REDIS_SERVICE: UIDS["redis"], naming.POSTGRES_SERVICE: UIDS["postgres"],
              "commander": UIDS["commander"],
              acl.EXPORTER_USER: UIDS["monitoring"]}
    for t in tenant_names:
        owners.update({naming.redis_user(t): UIDS["app"], naming.metrics_user(t): UIDS["app"]})
    for cn, uid in owners.items():
        give_key(cn, uid)


def init(rotate: bool = False) -> list[str]:
    """Create whatever secret is missing (everything with rotate). Returns one report line per file."""
    from ops.secrets import acl as acl_writer

    if os.geteuid() != 0:
        raise OpsError("`invoke init` must run as root: it gives each key to its container's user "
                       "(try `sudo ./invoke init`)")
    report: list[str] = []
    current = read_env(REDIS_ENV) if REDIS_ENV.exists() else envs.redis_values()
    _write_env(REDIS_ENV, envs.REDIS_SETTINGS, current, envs.REDIS_HEADER, rotate, report)
    names = tenants.known_names()
    for name in names:
        _write_env(tenants.env_path(name), envs.TENANT_SETTINGS, tenant_values_for(name),
                   envs.TENANT_HEADER.format(name=name), rotate, report)
    report += _ensure_monitoring_env()
    report += _ensure_backup_env()
    TLS.mkdir(parents=True, exist_ok=True)
    os.chmod(TLS.parent, 0o700)
    _ensure_tls(names, rotate, report)
    _chown_keys(names)
    report += tenant_files.write_all(names)
    report += acl_writer.apply(names)
    return report


def _ensure_monitoring_env() -> list[str]:
    """envs/monitoring.env from the table's defaults when absent: thresholds, no secret (so never rotated)."""
    path = INSTANCE.monitoring_env
    if path.exists():
        return [f"kept     {rel(path)}"]
    write_private(path, envs.render_monitoring_example(), mode=0o644)
    return [f"created  {rel(path)} (monitoring thresholds and intervals: edit it, then `./invoke up --monitoring`)"]


def _ensure_backup_env() -> list[str]:
    """envs/backup.env from the table's defaults when absent: the backup policy, no secret (so never rotated)."""
    path = INSTANCE.backup_env
    if path.exists():
        return [f"kept     {rel(path)}"]
    write_private(path, envs.render_backup_example(), mode=0o644)
    return [f"created  {rel(path)} (backup schedule, retention and off-host copy: see README, Backup strategy)"]


def missing() -> bool:
    """True when `init` has never run for this instance (or something it makes is gone)."""
    names = tenants.known_names()
    needed = [REDIS_ENV, REDIS_AUTH_CONF, INSTANCE.monitoring_env, *(_tls_files("ca")),
              *(tenants.env_path(n) for n in names),
              *(f for cn in certificate_names(names) for f in _tls_files(cn))]  # a certificate added since, too
    if not all(p.exists() for p in needed):
        return True
    # A secret row added since: init generates it. Every secret of redis.env (REDIS_MONITORING_SECRET was one);
    # in a tenant's file only the rows marked generated_on_upgrade (DATABASE_PASSWORD): a tenant whose REDIS_PASSWORD
    # was deleted by hand is refused in one line (check_all), not given a new password behind its running processes.
    files = {REDIS_ENV: {s.name for s in envs.REDIS_SETTINGS if s.secret and s.required},
             **{tenants.env_path(n): {s.name for s in envs.TENANT_SETTINGS if s.generated_on_upgrade}
                for n in names}}
    return any(not rows <= {k for k, v in read_env(path).items() if v} for path, rows in files.items())


def check_all(tenant_names) -> None:
    """Preflight before starting containers: every secret readable, every cert matching its key and the CA."""
    redis_settings()
    for name in tenant_names:
        tenants.load(name)
    ca = _tls_files("ca")[0]
    for cn in certificate_names(tenant_names):
        tls.check_pair(*_tls_files(cn), ca_path=ca)
    if not REDIS_AUTH_CONF.exists():
        raise OpsError(f"{rel(REDIS_AUTH_CONF)} is missing: run `./invoke init`")
