"""``bwmeter import``'s reading of files (the whole cycle runs over HTTP in
tests/integration/test_push_http.py)."""
import io
import json

import pytest

from bwmeter.cli import main, usage_events


def test_a_csv_row_becomes_a_cloudevent(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("id,time,service,direction,bytes,consumer\n7,2026-12-01T10:00:00Z,cdn,egress,42,acme\n")
    assert usage_events(str(path), "/import") == [{
        "specversion": "1.0", "id": "7", "source": "/import", "type": "dev.bandwidth-meter.usage",
        "time": "2026-12-01T10:00:00Z", "data": {"service": "cdn", "direction": "egress", "bytes": 42,
                                                 "consumer": "acme"}}]


def test_jsonl_takes_cloudevents_as_they_are_and_flat_objects_as_csv_rows(tmp_path):
    event = {"specversion": "1.0", "id": "x", "source": "/s", "type": "t", "time": "now", "data": {}}
    flat = {"id": 1, "time": "2026-12-01T10:00:00Z", "service": "cdn", "direction": "ingress", "bytes": 3,
            "source": "/mine"}
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps(event) + "\n\n" + json.dumps(flat) + "\n")
    first, second = usage_events(str(path), "/import")
    assert first == event and second["source"] == "/mine" and second["data"]["bytes"] == 3


@pytest.mark.parametrize("name, text, message", [
    ("a.csv", "id,time,service,direction\n1,2026-12-01T10:00:00Z,cdn,egress\n", "line 2: missing bytes"),
    ("a.csv", "id,time,service,direction,bytes\n1,2026-12-01T10:00:00Z,cdn,egress,lots\n", "bytes must be an integer"),
    ("a.jsonl", "{nope\n", "line 1 is not JSON"),
    ("a.jsonl", "[1]\n", "must be a JSON object"),
    ("a.txt", "", "give a .csv or a .jsonl file"),
    ("a.csv", "id,time,service,direction,bytes\n", "holds no event"),
])
def test_a_bad_file_is_a_message_and_exit_2_before_anything_is_sent(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    err = io.StringIO()
    env = {"BWMETER_URL": "http://127.0.0.1:9"}  # nothing listens: any request would be a network error (3)
    assert main(["import", str(path)], env=env, stdout=io.StringIO(), stderr=err) == 2
    assert message in err.getvalue()


def test_a_missing_file_and_a_batch_size_over_the_limit_are_exit_2(tmp_path):
    err = io.StringIO()
    env = {"BWMETER_URL": "http://127.0.0.1:9"}
    assert main(["import", str(tmp_path / "none.csv")], env=env, stdout=io.StringIO(), stderr=err) == 2
    assert "cannot read" in err.getvalue()
    assert main(["import", "x.csv", "--batch-size", "1001"], env=env, stdout=io.StringIO(), stderr=err) == 2
    assert "at most 1000" in err.getvalue()
