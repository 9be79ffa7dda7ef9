"""What the operator last asked to run on this instance, so `./invoke up` with no arguments brings it back.

Docker Engine restarts containers after a reboot by itself (`restart: unless-stopped`); rootful Podman
without systemd restarts nothing. So `up` records the tenants (and the tools profile) it started, `down`
forgets them, and a bare `up` starts Redis plus whatever is recorded. The monitoring profile, once started,
stays wanted (every later `up` also starts the metrics exporter of the tenants it starts) until
`down --monitoring` or `down`. Kept in the instance's own state
folder (ops/config/paths.STATE), never shared between instances.
"""
import json
import os

from ops.config.paths import STATE

WANTED = STATE / "wanted.json"


def load() -> dict:
    """{"tenants": [names], "tools": bool, "monitoring": bool}; empty when nothing was recorded (or unreadable)."""
    try:
        doc = json.loads(WANTED.read_text())
        return {"tenants": [str(n) for n in doc.get("tenants", [])], "tools": bool(doc.get("tools")),
                "monitoring": bool(doc.get("monitoring"))}
    except (OSError, ValueError, AttributeError):
        return {"tenants": [], "tools": False, "monitoring": False}


def _save(doc: dict) -> None:
    STATE.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = WANTED.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, sort_keys=True) + "\n")
    os.replace(tmp, WANTED)  # a reader never sees half a file


def add(tenant_names, tools: bool, monitoring: bool = False) -> None:
    doc = load()
    doc["tenants"] = sorted(set(doc["tenants"]) | set(tenant_names))
    doc["tools"] = doc["tools"] or tools
    doc["monitoring"] = doc["monitoring"] or monitoring
    _save(doc)


def forget_monitoring() -> None:
    _save({**load(), "monitoring": False})


def remove(tenant_names) -> None:
    doc = load()
    doc["tenants"] = sorted(set(doc["tenants"]) - set(tenant_names))
    _save(doc)


def clear() -> None:
    _save({"tenants": [], "tools": False, "monitoring": False})
