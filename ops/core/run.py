"""The one way ops runs a program (docker, compose, apt, checkers) and the one way it waits for something.

`run()` checks the exit code unless told not to, and turns a failure into the one-line OpsError an
operator sees: `<what> failed (exit N): <last line it printed>`. A missing program or a time-out is one
line too. `probe()` is `run()` for questions (does this container exist?): it never raises on exit codes.
`stream()` copies a program's stdout into a file as it comes (container exports, tar streams).
`wait_until()` polls a condition until a deadline, printing what it still waits for whenever that
changes, so long waits show progress; on time-out it raises one line naming what never happened.
"""
import shlex
import subprocess
import time
from collections.abc import Callable

from .errors import OpsError

__all__ = ["probe", "run", "stream", "wait_until"]


def _last_line(text: str | bytes | None) -> str:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    lines = (text or "").strip().splitlines()
    return lines[-1][:300] if lines else "no output"


def run(argv: list[str], *, what: str | None = None, check: bool = True, capture: bool = True, text: bool = True,
        timeout: float | None = None, env: dict | None = None, cwd=None, input=None) -> subprocess.CompletedProcess:
    """Run argv to completion; with check, a non-zero exit is an OpsError naming `what` and the last output line."""
    what = what or shlex.join(argv[:3])
    try:
        proc = subprocess.run(argv, capture_output=capture, text=text, timeout=timeout, env=env, cwd=cwd, input=input,
                              check=False)  # checked below, into one line
    except FileNotFoundError:
        raise OpsError(f"{what}: {argv[0]} is not installed: run `./invoke engine` (or install it)") from None
    except subprocess.TimeoutExpired:
        raise OpsError(f"{what} did not finish within {timeout:.0f}s: check the engine (`docker info`)") from None
    if check and proc.returncode != 0:
        said = _last_line(proc.stderr or proc.stdout) if capture else "see its output above"
        raise OpsError(f"{what} failed (exit {proc.returncode}): {said}")
    return proc


def probe(argv: list[str], **kw) -> subprocess.CompletedProcess:
    """run() for questions: the exit code is the answer, never an error."""
    return run(argv, check=False, **kw)


def stream(argv: list[str], dest, *, what: str | None = None, progress=None, chunk: int = 1 << 20) -> int:
    """Copy argv's stdout into the binary file object `dest` as it comes; returns the bytes copied."""
    what = what or shlex.join(argv[:4])
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except FileNotFoundError:
        raise OpsError(f"{what}: {argv[0]} is not installed: run `./invoke engine`") from None
    total = 0
    while block := proc.stdout.read(chunk):
        dest.write(block)
        total += len(block)
        if progress:
            progress(total)
    err = proc.stderr.read()
    if proc.wait() != 0:
        raise OpsError(f"{what} failed (exit {proc.returncode}): {_last_line(err)}")
    return total


def wait_until(pending: Callable[[], str | None], *, timeout: float, what: str, fix: str = "", log=None,
               interval: float = 0.5) -> None:
    """Poll `pending()` until it returns None (done); it returns what is still awaited otherwise.

    Each new answer is logged (progress); after `timeout` seconds: OpsError
    `<what>: still <answer> after <timeout>s[: <fix>]`.
    """
    deadline = time.monotonic() + timeout
    last = None
    while (state := pending()) is not None:
        if log and state != last:
            log(f"{what}: waiting for {state}")
        last = state
        if time.monotonic() > deadline:
            raise OpsError(f"{what}: still {state} after {timeout:.0f}s" + (f": {fix}" if fix else ""))
        time.sleep(interval)
