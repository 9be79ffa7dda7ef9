"""The tenant's own project, as its env file names it: import its settings, Celery app and WSGI app.

Every import of the project goes through here, so a name that does not resolve is one line naming the
setting and the folder it was looked up in, instead of a traceback from deep inside Django or Celery.
"""
import importlib
import os
import sys

from tenantstack import env

EXIT_CONFIG = env.EXIT_CONFIG


def _fail(setting: str, value: str, why: str) -> None:
    print(f"config error: {setting}={value} {why}: set it in envs/tenant-<name>.env to what the project at "
          f"{os.getcwd()} provides (README, Bring your own project)", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_CONFIG)


def import_module(setting: str, dotted: str):
    """The module; a missing one (not an ImportError inside it, which is the project's own bug) is one line."""
    try:
        return importlib.import_module(dotted)
    except ModuleNotFoundError as exc:
        if exc.name and (dotted == exc.name or dotted.startswith(exc.name + ".")):
            _fail(setting, dotted, f"cannot be imported (no module {exc.name!r})")
        raise


def attribute(setting: str, spec: str):
    """`module:attr` from a setting such as TENANT_CELERY_APP."""
    module_name, _, attr = spec.partition(":")
    module = import_module(setting, module_name)
    try:
        return getattr(module, attr)
    except AttributeError:
        _fail(setting, spec, f"names no attribute {attr!r} in module {module_name}")
