"""The benchmarks run in CI at small sizes, so they keep working; full sizes are run by hand
(bench/RESULTS.md). Each prints its table; the collector's must show zero error."""
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[2]


def run(*args):
    result = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def test_collector_benchmark_small():
    out = run("bench/collector_bench.py", "--services", "10", "--runs", "2")
    assert "collector" in out and "error +0" in out
    assert "WCU/svc-min" in out


def test_api_load_benchmark_small():
    out = run("bench/api_load.py", "--seconds", "1", "--max-clients", "2")
    assert "req/s" in out and ("sustained before" in out or "p95 above" in out)


def test_consumers_benchmark_small():
    out = run("bench/consumers.py", "--services", "5", "--consumers", "20", "--per-service", "4", "--quotas", "--near")
    # Items under 1 KB over a whole 20-minute cycle: every consumer written at its end; of the two
    # with a quota, the one whose thresholds are crossed in the cycle also at minutes 8 and 10.
    assert "with a quota (2): 0.100 WCU per active consumer-minute; without (18): 0.050" in out
    sharded = run("bench/consumers.py", "--services", "6", "--consumers", "20", "--per-service", "4", "--quotas",
                  "--shards", "3")
    assert "each of 3 shards" in sharded and "WCU per active consumer-minute" in sharded
    # The full size, for the multiplier of the consumer items alone (bench/RESULTS.md).
    spans = run("bench/consumers.py", "--services", "10000", "--consumers", "100000", "--per-service", "50",
                "--shards", "8", "--spans-only")
    assert "a consumer spans 3.735 shards" in spans
    assert "DynamoDB requests" in out
