"""The command line an operator types: every task answers `./invoke TASK --help` with its usage and help text.

Runs the real `./invoke` wrapper (the project's virtualenv, Invoke's parser): nothing is started.
"""
import inspect
import json
import subprocess

import pytest
from invoke import Collection

import tasks
from ops.config.paths import ROOT

INVOKE = str(ROOT / "invoke")


def _task_names() -> list[str]:
    out = subprocess.run([INVOKE, "--list", "--list-format=json"], cwd=ROOT, capture_output=True, text=True,
                         check=True, timeout=120)
    return sorted(t["name"] for t in json.loads(out.stdout)["tasks"])


TASK_NAMES = _task_names()


def test_every_task_has_a_docstring_and_help_for_every_option():
    collection = Collection.from_module(tasks)
    assert sorted(collection.task_names) == TASK_NAMES
    missing = []
    for name in TASK_NAMES:
        task = collection[name]
        if not (task.__doc__ or "").strip():
            missing.append(f"{name}: no docstring")
        params = [p for p in inspect.signature(task.body).parameters if p != "c"]
        missing += [f"{name} --{p.replace('_', '-')}: no help text" for p in params if not task.help.get(p)]
    assert not missing, missing


@pytest.mark.parametrize("flag", ["--help", "-h"])
@pytest.mark.parametrize("name", TASK_NAMES)
def test_task_help_prints_usage_and_changes_nothing(name, flag):
    """Also for tasks with a required positional argument, which Invoke alone would read `--help` into."""
    proc = subprocess.run([INVOKE, name, flag], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith(f"Usage: inv[oke] [--core-opts] {name} "), proc.stdout[:300]
    assert "Docstring:" in proc.stdout and "error" not in proc.stderr.lower(), proc.stdout + proc.stderr
