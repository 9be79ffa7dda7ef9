"""Metrics only ops on the host can know, written as Prometheus text files the alert receiver serves.

Backups are root's (0700) and the private keys are the containers' users': neither is mounted into the
monitoring containers. Instead ops writes what Prometheus needs to know about them into the instance's
generated/textfile/ (mounted read-only into the alert receiver, scraped as job `ops`):
  backup.prom        tenantstack_backup_last_verified_timestamp_seconds: the newest complete backup (a
                     backup is renamed into place only after it verified); 0 when there is none
  backup_copy.prom   tenantstack_backup_copy_last_success_timestamp_seconds (0: never) and
                     tenantstack_backup_copy_failed (1 while the last run of BACKUP_COPY_COMMAND failed), from the
                     schedule's record (ops/data/schedule.py COPY_STATE)
  certificates.prom  tenantstack_certificate_expiry_timestamp_seconds{certificate}: notAfter of the CA and
                     of every certificate the deployment issued (ops/secrets/generate.py certificate_names)
Written by every `./invoke up`, `init`, `tenant-add`, `backup` and each run of `backup-schedule`; each file replaced
whole (atomic rename).
"""
import datetime as dt
import json
from pathlib import Path

from cryptography import x509

from ops.config import tenants
from ops.config.paths import BACKUPS, INSTANCE, TLS
from ops.secrets import generate as secrets

DIR = INSTANCE.textfile_metrics
BACKUP_FILE = DIR / "backup.prom"
COPY_FILE = DIR / "backup_copy.prom"
CERTS_FILE = DIR / "certificates.prom"
CA = "ca"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o755)
    INSTANCE.generated.chmod(0o755)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.chmod(0o644)
    tmp.replace(path)  # the receiver never serves half a file


def _metric(name: str, help_text: str, samples: list[tuple[str, float]]) -> str:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
    lines += [f"{name}{labels} {value:.0f}" for labels, value in samples]
    return "\n".join(lines) + "\n"


def last_verified_backup() -> tuple[str, dt.datetime, dict] | None:
    """(name, creation time, the server that wrote it) of the newest complete backup of the instance, or None.

    The server comes from this release's manifest `server` section or, for a backup of the previous release,
    its redis_version (backup_format.server_of): a backup taken before the move to Valkey still counts."""
    from ops.data import backup_format

    if not BACKUPS.is_dir():
        return None
    for path in reversed(backup_format.complete_backups()):
        try:
            manifest = json.loads((path / "manifest.json").read_text())
            created, server = dt.datetime.fromisoformat(manifest["created"]), backup_format.server_of(manifest)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue  # unreadable manifest: not a backup restore would accept either
        if server is not None:  # a manifest naming no server is refused by restore too
            return path.name, created, server
    return None


def certificates() -> dict[str, dt.datetime]:
    """Every certificate of the deployment -> its notAfter (missing files are left out: init makes them)."""
    out = {}
    for cn in [CA, *secrets.certificate_names(tenants.known_names())]:
        path = TLS / f"{cn}.crt"
        try:
            out[cn] = x509.load_pem_x509_certificate(path.read_bytes()).not_valid_after_utc
        except (OSError, ValueError):
            continue
    return out


def write_backup() -> None:
    found = last_verified_backup()
    stamp = found[1].timestamp() if found else 0
    _write(BACKUP_FILE, _metric("tenantstack_backup_last_verified_timestamp_seconds",
                                "Creation time of the newest verified backup (0: none).", [("", stamp)]))


def copy_state() -> dict:
    """The schedule's record of its copy hook ({} before the first copy, or when unreadable)."""
    from ops.data import schedule

    try:
        doc = json.loads(schedule.COPY_STATE.read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def write_copy() -> None:
    state = copy_state()
    try:
        success = dt.datetime.fromisoformat(state["last_success"]).timestamp()
    except (KeyError, TypeError, ValueError):
        success = 0
    failed = 1 if state.get("status") == "failed" else 0
    _write(COPY_FILE, _metric("tenantstack_backup_copy_last_success_timestamp_seconds",
                              "When BACKUP_COPY_COMMAND last copied a verified backup (0: never).", [("", success)])
           + _metric("tenantstack_backup_copy_failed", "1 while the last copy of a verified backup failed.",
                     [("", failed)]))


def write_certificates() -> None:
    samples = [(f'{{certificate="{cn}"}}', when.timestamp()) for cn, when in sorted(certificates().items())]
    _write(CERTS_FILE, _metric("tenantstack_certificate_expiry_timestamp_seconds",
                               "notAfter of each certificate the deployment issued.", samples))


def write_all() -> None:
    write_backup()
    write_copy()
    write_certificates()
