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


def test_push_benchmarks_small():
    """The push benchmark's import (time-ordered and interleaved) commits exactly the events'
    bytes, each event's claim charged one write unit; its batch run shows the 1,000-event figures."""
    for shape in ([], ["--interleaved"]):
        out = run("bench/events.py", "--import", "2000", "--keep-alive", *shape)
        assert "{'accepted': 2000, 'duplicate': 0}" in out
        assert "event markers (idempotency): 2000" in out
        assert "bytes committed 3,999,000 of the events' 3,999,000: exact" in out
    batch = run("bench/events.py", "--keep-alive")
    assert "replay: the spread batch again (all duplicates): accepted 0, duplicate 1000" in batch
    assert batch.count("event markers (idempotency): 1000") == 3
