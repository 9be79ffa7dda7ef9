"""A steady load on one tenant while an operation works on another: every request and every task counted.

    with load_loop.Load("a") as load:
        ...the operation on tenant b...
    report = load.finish()          # waits for every accepted task's result
    assert report.failed_requests == [] and report.lost_tasks == []

A thread posts the example project's echo task through the tenant's web (the real path: gunicorn, Django, the
tenant's ACL user, Redis, its worker) every `interval` seconds and records each request's latency; `finish()` stops
it and waits until every accepted task reached SUCCESS. A request that errs, times out or is not answered 202 is a
failed request; an accepted task that never succeeds is a lost one. `p99_before` is taken by `Load.baseline()` on
the same path just before, so an operation's effect is a ratio (`p99_ratio`), never an absolute time.
"""
import dataclasses
import statistics
import threading
import time

from tests.support import deployment as d


@dataclasses.dataclass
class Report:
    tenant: str
    requests: int
    failed_requests: list[str]
    tasks: int
    lost_tasks: list[str]
    p99_before_ms: float
    p99_during_ms: float

    @property
    def p99_ratio(self) -> float:
        return self.p99_during_ms / self.p99_before_ms if self.p99_before_ms else float("inf")

    def line(self) -> str:
        return (f"tenant {self.tenant}: {self.requests} requests, {len(self.failed_requests)} failed, "
                f"{self.tasks} tasks, {len(self.lost_tasks)} lost, p99 {self.p99_during_ms:.1f} ms during vs "
                f"{self.p99_before_ms:.1f} ms before (x{self.p99_ratio:.2f})")


def _p99(samples: list[float]) -> float:
    if len(samples) < 2:
        return samples[0] if samples else 0.0
    return statistics.quantiles(samples, n=100, method="inclusive")[98]


class Load:
    """Echo tasks posted to `tenant` every `interval` s on a thread; see the module docstring."""

    def __init__(self, tenant: str, interval: float = 0.05, timeout: float = 10):
        self.tenant, self.interval, self.timeout = tenant, interval, timeout
        self.p99_before_ms = 0.0
        self._ids: list[str] = []
        self._failed: list[str] = []
        self._latencies: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"load-{tenant}", daemon=True)

    def _post(self) -> tuple[float, str | None, str | None]:
        """(latency ms, task id or None, failure or None) of one echo request."""
        t0 = time.perf_counter()
        try:
            status, body = d.http("POST", d.web_url(self.tenant, "/api/tasks/echo"), b'{"value": "load"}',
                                  timeout=self.timeout)
        except Exception as exc:  # noqa: BLE001 - every way a request can fail counts as one failure
            return (time.perf_counter() - t0) * 1000, None, f"{exc.__class__.__name__}: {exc}"
        ms = (time.perf_counter() - t0) * 1000
        if status != 202:
            return ms, None, f"HTTP {status}: {body}"
        return ms, body["id"], None

    def baseline(self, n: int = 100) -> float:
        """p99 (ms) of `n` requests on the same path, one at a time, before the operation; their tasks are
        awaited too (a baseline request that fails fails the test: the tenant was not healthy to begin with)."""
        samples, ids = [], []
        for _ in range(n):
            ms, task_id, failure = self._post()
            assert failure is None, f"baseline request to tenant {self.tenant} failed: {failure}"
            samples.append(ms)
            ids.append(task_id)
            time.sleep(self.interval)
        d.wait_for_results(self.tenant, ids, timeout=120)
        self.p99_before_ms = _p99(samples)
        return self.p99_before_ms

    def _run(self) -> None:
        while not self._stop.is_set():
            ms, task_id, failure = self._post()
            self._latencies.append(ms)
            if failure:
                self._failed.append(f"{time.strftime('%H:%M:%S')} {failure}")
            else:
                self._ids.append(task_id)
            self._stop.wait(self.interval)

    def __enter__(self) -> "Load":
        if not self.p99_before_ms:
            self.baseline()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=self.timeout + 5)

    def finish(self, timeout: float = 180) -> Report:
        """Stop posting (if still running), wait for every accepted task, and say what happened."""
        self.__exit__(None, None, None)
        done, pending = d.poll_results(lambda task_id: d.task_status(self.tenant, task_id), self._ids, timeout)
        return Report(self.tenant, len(self._latencies), list(self._failed), len(self._ids), sorted(pending),
                      self.p99_before_ms, _p99(self._latencies))
