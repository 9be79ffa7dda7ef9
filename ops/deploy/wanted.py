"""What the operator last asked to run on this instance, so `./invoke up` with no arguments brings it back.

Docker Engine restarts containers after a reboot by itself (`restart: unless-stopped`); rootful Podman
without systemd restarts nothing. So `up` records the tenants (and the tools profile) it started, `down`
forgets them, and a bare `up` starts Redis plus whatever is recorded. Kept in the instance's own state
folder (ops/config/paths.STATE), never shared between instances.
"""
import json
import os

from ops.config.paths import STATE

WANTED = STATE / "wanted.json"


def load() -> dict:
    """{"tenants": [names], "tools": bool}; empty when nothing was recorded (or the file is unreadable)."""
    try:
        doc = json.loads(WANTED.read_text())
        return {"tenants": [str(n) for n in doc.get("tenants", [])], "tools": bool(doc.get("tools"))}
    except (OSError, ValueError, AttributeError):
        return {"tenants": [], "tools": False}


def _save(doc: dict) -> None:
    STATE.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = WANTED.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, sort_keys=True) + "\n")
    os.replace(tmp, WANTED)  # a reader never sees half a file


def add(tenant_names, tools: bool) -> None:
    doc = load()
    doc["tenants"] = sorted(set(doc["tenants"]) | set(tenant_names))
    doc["tools"] = doc["tools"] or tools
    _save(doc)


def remove(tenant_names) -> None:
    doc = load()
    doc["tenants"] = sorted(set(doc["tenants"]) - set(tenant_names))
    _save(doc)


def clear() -> None:
    _save({"tenants": [], "tools": False})
