"""`bwmeter consumers` against the scripted HTTP server of test_cli."""
import json

from tests.unit.test_cli import api, run  # noqa: F401 (api: the fixture)


def consumer(name, used, limit=None, services=("pay",)):
    quota = {"source": "consumer", "limit_bytes": limit, "period": "month", "direction": "total"} if limit else None
    return {"consumer": name, "workspace": "default", "name": name,
            "usage": {"ingress": 0, "egress": used, "total": used},
            "period": {"kind": "month", "start": "2026-12-01T00:00:00Z", "end": "2027-01-01T00:00:00Z"},
            "quota": quota, "percent": round(100 * used / limit, 2) if limit else None,
            "services": {s: {"ingress": 0, "egress": used, "total": used} for s in services},
            "first_seen": "2026-12-01T00:00:00Z", "last_active": "2026-12-01T00:05:00Z"}


def test_consumers_prints_a_table_with_when_the_order_was_ranked(api):
    api.respond = lambda r: (200, {"consumers": [consumer("acme-mobile", 250, 1000, ("pay", "search")),
                                                 consumer("globex-web", 5)],
                                   "total_count": 2, "next_cursor": None, "sort": "usage", "order": "desc",
                                   "ranked_at": "2026-12-01T00:10:00Z"}, {})
    code, out, _ = run(api, "consumers")
    lines = out.splitlines()
    assert code == 0 and lines[0].split()[:4] == ["CONSUMER", "USED", "QUOTA", "USED"]
    assert lines[1].split()[:7] == ["acme-mobile", "250", "B", "1", "KB", "25.0", "%"]
    assert lines[1].split()[7] == "2"  # services
    assert lines[2].split()[:4] == ["globex-web", "5", "B", "-"]
    assert lines[-1] == "2 consumers; ordered as ranked at 2026-12-01T00:10:00Z"
    assert api.requests[0]["path"] == "/v1/consumers" and api.requests[0]["query"]["sort"] == ["usage"]


def test_consumers_follows_pages_up_to_the_limit_and_says_how_many_there_are(api):
    pages = {None: {"consumers": [consumer("a", 3), consumer("b", 2)], "next_cursor": "c1", "total_count": 9,
                    "ranked_at": None},
             "c1": {"consumers": [consumer("c", 1)], "next_cursor": "c2", "total_count": 9, "ranked_at": None}}
    api.respond = lambda r: (200, pages[r["query"].get("cursor", [None])[0]], {})
    code, out, _ = run(api, "consumers", "--sort", "name", "--limit", "3")
    assert code == 0 and [line.split()[0] for line in out.splitlines()[1:4]] == ["a", "b", "c"]
    assert out.splitlines()[-1] == "3 of 9"
    assert [r["query"]["limit"] for r in api.requests] == [["3"], ["1"]]
    code, out, _ = run(api, "--json", "consumers", "--limit", "2")
    assert [c["consumer"] for c in json.loads(out)["consumers"]] == ["a", "b"]


def test_consumers_with_none_seen_says_why_and_a_bad_limit_is_a_usage_error(api, capsys):
    api.respond = lambda r: (200, {"consumers": [], "next_cursor": None, "total_count": None, "ranked_at": None}, {})
    code, out, _ = run(api, "consumers")
    assert code == 0 and "No consumers have been seen yet" in out
    code, _, _ = run(api, "consumers", "--limit", "0")
    assert code == 2 and "--limit: must be more than 0" in capsys.readouterr().err
