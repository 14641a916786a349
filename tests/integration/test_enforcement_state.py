"""Desired and applied block state over a real Kong Admin API and gateway: between a
quota change and the next collector run, GET /v1/enforcement says "block pending" or "lift
pending", never "nothing blocked" while the gateway still answers 429. The world (moto server,
development gateway, fixed clock) is the one tests/integration/test_enforcement.py builds."""
from tests.integration.test_enforcement import block_pay, kong, world  # noqa: F401  (fixtures)


def test_right_after_a_lift_the_listing_says_lift_pending_while_the_gateway_still_429s(world):  # noqa: F811 (the fixture)
    block_pay(world)
    listing = world.api("/v1/enforcement")
    assert [(b["service"], b["state"], b["at_gateway"]) for b in listing["blocked"]] == [("pay", "blocked", True)]
    assert listing["lift_pending"] == []
    world.book.put("pay", {"limit_bytes": 10_000, "action": "warn"})  # no reconcile has run since
    listing = world.api("/v1/enforcement")
    assert world.proxy("/pay").status_code == 429
    assert listing["blocked"] == [] and listing["gateway"]["blocked"] == ["pay"]
    [lifting] = listing["lift_pending"]
    assert lifting["service"] == "pay" and lifting["state"] == "lift pending" and lifting["at_gateway"] is True
    assert lifting["plugin_id"] == world.ours("pay")[0]["id"] and lifting["period_end"] == "2026-12-01T00:00:00Z"
    world.minute(2)  # the next run lifts it: desired and applied agree again
    listing = world.api("/v1/enforcement")
    assert world.proxy("/pay").status_code == 200
    assert listing["blocked"] == [] and listing["lift_pending"] == [] and listing["gateway"]["blocked"] == []


def test_a_block_due_before_the_next_run_is_block_pending(world):  # noqa: F811
    world.minute(0, {"pay": 6_000})
    world.book.put("pay", {"limit_bytes": 5_000, "action": "reject"})  # due now, applied at the next run
    [pending] = world.api("/v1/enforcement")["blocked"]
    assert (pending["service"], pending["state"], pending["at_gateway"]) == ("pay", "block pending", False)
    assert world.proxy("/pay").status_code == 200
    world.minute(1)
    [applied] = world.api("/v1/enforcement")["blocked"]
    assert (applied["state"], applied["at_gateway"]) == ("blocked", True) and world.proxy("/pay").status_code == 429
