"""The development Admin API's consumers and which request-termination the gateway honours,
in Kong's order of plugin scopes (kong/runloop/plugins_iterator.lua): route+service+consumer,
route+consumer, service+consumer, route+service, consumer, route, service, global."""
import pytest

from localrun.devgateway import consumer_id
from localrun.kongadmin import AdminState


@pytest.fixture
def state():
    state = AdminState(["pay", "media"])
    for username in ("alice", "bob"):
        state.add_consumer(username)
    return state


def terminate(state, status, service=None, consumer=None, route=None):
    code, _ = state.create_plugin(state.service(service) if service else None,
                                  {"name": "request-termination", "config": {"status_code": status}},
                                  route=route, consumer=consumer_id(consumer) if consumer else None)
    assert code == 201


def honoured(state, service, consumer=None, route=None):
    config = state.termination(service, route, consumer_id(consumer) if consumer else None)
    return config and config["status_code"]


def test_consumers_are_found_by_username_or_id_only_when_uuid_shaped(state):
    alice = state.consumer("alice")
    assert alice["username"] == "alice" and alice["id"] == consumer_id("alice")
    assert state.consumer(alice["id"]) == alice == state.consumer(alice["id"].upper())
    assert state.consumer(consumer_id("carol")) is None  # an id nobody has: never read as a username
    assert state.add_consumer("alice") is alice  # already there: the same entity


def test_a_consumer_block_applies_to_that_consumer_on_every_service(state):
    terminate(state, 429, consumer="alice")
    assert [honoured(state, s, "alice") for s in ("pay", "media")] == [429, 429]
    assert [honoured(state, s, "bob") for s in ("pay", "media")] == [None, None]
    assert honoured(state, "pay") is None  # anonymous


def test_a_consumer_block_on_one_service_applies_there_only(state):
    terminate(state, 429, service="pay", consumer="alice")
    assert (honoured(state, "pay", "alice"), honoured(state, "media", "alice"), honoured(state, "pay", "bob")) == \
        (429, None, None)


def test_the_most_specific_scope_wins_as_in_kong(state):
    terminate(state, 500)  # global
    terminate(state, 501, service="pay")
    terminate(state, 502, route="checkout")
    terminate(state, 503, consumer="alice")
    terminate(state, 504, service="pay", route="checkout")
    terminate(state, 505, service="pay", consumer="alice")
    terminate(state, 506, route="checkout", consumer="alice")
    terminate(state, 507, service="pay", route="checkout", consumer="alice")
    assert honoured(state, "pay", "alice", "checkout") == 507
    assert honoured(state, "media", "alice", "checkout") == 506  # route+consumer
    assert honoured(state, "pay", "alice") == 505  # service+consumer
    assert honoured(state, "pay", "bob", "checkout") == 504  # route+service beats the consumer-less rest
    assert honoured(state, "media", "alice") == 503  # consumer only
    assert honoured(state, "media", None, "checkout") == 502
    assert honoured(state, "pay", "bob") == 501
    assert honoured(state, "media", "bob") == 500


def test_a_consumer_block_beats_the_services_and_the_routes_own(state):
    terminate(state, 503, service="pay")
    terminate(state, 502, route="checkout")
    terminate(state, 429, consumer="alice")
    assert (honoured(state, "pay", "alice"), honoured(state, "pay", "bob")) == (429, 503)
    assert (honoured(state, "pay", "alice", "checkout"), honoured(state, "pay", "bob", "checkout")) == (429, 502)


def test_a_disabled_block_is_not_honoured(state):
    terminate(state, 429, consumer="alice")
    next(iter(state.plugins.values()))["enabled"] = False
    assert honoured(state, "pay", "alice") is None
