"""Host-side operations for tenantstack, used by tasks.py."""
import sys
from pathlib import Path

# The app's naming module is the one place for tenant-derived names; make it importable.
_APP_DIR = str(Path(__file__).resolve().parent.parent / "app")
if _APP_DIR not in sys.path:
    sys.path.insert(0, _APP_DIR)
