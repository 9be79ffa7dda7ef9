"""`invoke bench --quick` runs every section end to end on the real containers (so the benchmark cannot rot)."""
import json

import pytest

from ops.bench.run import RESULTS
from tests.support import deployment as d

pytestmark = pytest.mark.usefixtures("tenants_up")


def test_quick_bench_measures_every_section():
    out = d.invoke("bench", "--quick", timeout=1800).stdout
    results = json.loads(RESULTS.read_text())
    assert results["config"] == {"n": 200, "rounds": 1, "keys": 10_000, "rows": 5_000}
    for tenant in ("a", "b"):
        assert results["throughput"][tenant]["tasks_per_s"] > 0 and results["throughput"][tenant]["n"] == 200
    paced = results["throughput"]["paced_100"]
    assert paced["n"] == 1000 and 0 < paced["latency_p50_ms"] <= paced["latency_p99_ms"]
    assert results["hardening"]["ratio"] > 0 and len(results["hardening"]["plain_tasks_per_s"]) == 1
    assert set(results["two_tenants"]["together"]) == {"a", "b"}
    assert results["flush"]["batched"]["deleted"] == 5_000 == results["flush"]["delete_expired"]["deleted"]
    assert results["backup"]["keys"] == 10_000 and results["backup"]["restore_s"] > 0
    assert results["warm_up"]["seconds"] > 0
    assert "hardened / plain" in out and "target" in out
    assert d.http("GET", d.web_url("a", "/healthz"))[0] == 200  # left the deployment up
    assert d.client().exists("bench:key:0") == 0  # and its dataset cleaned away
