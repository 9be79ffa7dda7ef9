"""`invoke bench --quick` runs every section end to end on the real containers (so the benchmark cannot rot)."""
import json
import math
import subprocess

import pytest

from deployment.instance import BENCH_COMPONENT
from ops.bench import run as bench
from ops.bench import stack
from ops.config.paths import INSTANCE
from tests.support import deployment as d

pytestmark = pytest.mark.usefixtures("tenants_up")


def _sane(x) -> bool:
    return isinstance(x, int | float) and math.isfinite(x) and x > 0


def test_quick_bench_measures_every_section_and_every_target_and_cleans_up():
    out = d.invoke("bench", "--quick", timeout=2400).stdout
    results = json.loads(bench.RESULTS.read_text())
    assert results["config"] == bench.QUICK
    assert results["machine"]["nproc"] >= 1 and results["machine"]["cpu_model"] and results["machine"]["engine"]
    for section in bench.SECTIONS:
        assert f"bench: [{section}] started" in out and f"bench: [{section}] done in" in out
        assert results[section]["elapsed_s"] > 0
    for config in stack.CONFIGS:
        tp = results["throughput"][config]
        assert len(tp["runs"]) == 1 and tp["runs"][0]["n"] == 200
        assert _sane(tp["tasks_per_s"]) and _sane(tp["enqueue_per_s"])
        # The engine's accounting saw the work: each involved container used some CPU, a few ms per task at least.
        assert all(_sane(ms) for ms in tp["runs"][0]["cpu_ms"].values()) and 0.1 < tp["cpu_ms_per_task"] < 1000
    assert results["idle"]["tenants"] == 2 and _sane(results["idle"]["cores_containers"])
    for config in ("A", "C"):
        lat = results["latency"][config]
        assert lat["runs"][0]["n"] == 100 * bench.QUICK["paced_s"]
        assert 0 < lat["p50_ms"] <= lat["p99_ms"] <= lat["max_ms"] < 60_000
    assert results["memory"]["queued"] >= bench.QUICK["queued"] and 0 < results["memory"]["bytes_per_task"] < 100_000
    for method in ("batched", "delete_expired"):
        flushed = results["flush"][method]
        assert flushed["deleted"] == bench.QUICK["rows"] and _sane(flushed["rows_per_s"])
    assert _sane(results["backup"]["backup_over_raw"]) and _sane(results["backup"]["naive_downtime_s"])
    mon = results["monitoring"]
    assert mon["tenants"] == 2 and len(mon["rounds"]) == 1 and _sane(mon["cores_without"]) and _sane(mon["cores_with"])
    assert _sane(mon["header_us_per_publish"]) and mon["header_us_per_publish"] < 1000
    assert len(mon["rounds"][0]["with"]["cores_by_container"]) > len(mon["rounds"][0]["without"]["cores_by_container"])
    assert set(results["targets"]) == {name for name, *_ in bench.TARGETS}
    for name, entry in results["targets"].items():
        # A count of failures (target "<= 0") is sane at 0, its goal; every other figure is a positive measurement.
        counted = entry["op"] == "<=" and entry["target"] == 0
        value_ok = entry["value"] >= 0 if counted else _sane(entry["value"])
        assert value_ok and entry["met"] == bench._met(entry["value"], entry["op"], entry["target"]), name
        assert name in out
    # Left the deployment up and clean: no bench container, volume or image, no dataset, tenant a's worker back.
    assert d.http("GET", d.web_url("a", "/healthz"))[0] == 200
    assert d.client().exists("bench:key:0") == 0
    names = d.compose_run("ps", "--format", "{{.Name}}").stdout
    assert "tenant-a-worker" in names
    ps = subprocess.run(["docker", "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True).stdout.split()
    assert not [n for n in ps if n.startswith(f"{INSTANCE.name}-bench-")]
    assert f"{INSTANCE.name}-prometheus-1" not in ps  # the monitoring profile was not running before: removed again
    image = subprocess.run(["docker", "image", "inspect", INSTANCE.image(BENCH_COMPONENT)], capture_output=True)
    assert image.returncode != 0


def test_bad_arguments_are_one_line():
    for args, said in ((("-n", "0"), "error: -n must be at least 1 (got 0)"),
                       (("--only", "nope"), "error: --only 'nope' is not a section: use one of "
                                            + ", ".join(bench.SECTIONS))):
        proc = d.invoke("bench", *args, check=False)
        assert proc.returncode == 2 and proc.stderr.strip() == said, proc.stderr
