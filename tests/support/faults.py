"""Driving ./invoke tasks into their fault points (ops/data/journal.py fault_point) and filling a disk under them:
the fault tests' shared means, for Redis' and PostgreSQL's backups and restores alike."""
import os
import signal
import subprocess
from pathlib import Path

from ops.config.paths import BACKUPS, INSTANCE
from ops.core.run import wait_until
from ops.data import journal as jn
from tests.support import deployment as d


def start(args: list[str], step: str, action: str, out: Path) -> subprocess.Popen:
    env = {**os.environ, jn.FAULT_VAR: step, jn.FAULT_ACTION_VAR: action}
    # Output to files, not pipes: a full pipe would block the task before it reaches its step.
    return subprocess.Popen([d.INVOKE, *args], cwd=INSTANCE.root, env=env, stdin=subprocess.DEVNULL,
                            stdout=open(out / "stdout", "w"), stderr=open(out / "stderr", "w"))


def killed_at(args: list[str], step: str, tmp_path: Path) -> str:
    """Run ./invoke ARGS until it SIGKILLs itself at `step`; returns its output."""
    proc = start(args, step, "kill", tmp_path)
    code = proc.wait(timeout=600)
    out = (tmp_path / "stdout").read_text()
    err = (tmp_path / "stderr").read_text()[-2000:]
    assert code == -signal.SIGKILL, f"exit {code}, never reached {step}:\n{out[-2000:]}\n{err}"
    assert f"fault: {step}" in out
    return out


def stopped_at(args: list[str], step: str, tmp_path: Path, timeout: float = 600) -> subprocess.Popen:
    """Run ./invoke ARGS until it SIGSTOPs itself at `step` (the caller SIGCONTs it)."""
    proc = start(args, step, "stop", tmp_path)

    def pending():
        if proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode} before {step}: {(tmp_path / 'stderr').read_text()[-2000:]}")
        return None if Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T" else step
    wait_until(pending, timeout=timeout, what="the task", interval=0.2)
    return proc


def resume(proc: subprocess.Popen, tmp_path: Path) -> tuple[int, str, str]:
    """SIGCONT a task stopped_at() left; its exit code, stdout and stderr."""
    os.kill(proc.pid, signal.SIGCONT)
    code = proc.wait(timeout=600)
    return code, (tmp_path / "stdout").read_text(), (tmp_path / "stderr").read_text()


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in stderr, stderr
    return lines[0]


def partials() -> list[str]:
    return sorted(p.name for p in BACKUPS.glob(".*.partial")) if BACKUPS.is_dir() else []


def fill_disk(path: Path) -> None:
    """Another process fills the disk `path` is on, one MiB at a time, until the disk refuses."""
    with open(path, "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * (1 << 20))
                fh.flush()
        except OSError:
            pass
