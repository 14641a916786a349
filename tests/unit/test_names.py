import pytest

from chalicelib.core.names import qualified, workspace_and_name


@pytest.mark.parametrize("workspace, name, key", [
    ("", "orders", "orders"),
    ("default", "orders", "orders"),
    ("team-b", "orders", "team-b:orders"),
    ("default", "ws:alice", "default:ws:alice"),  # a default name with ':' cannot pass for ws's alice
    ("ws", "alice", "ws:alice"),
    ("ws", "a:b", "ws:a:b"),
])
def test_a_name_is_qualified_by_its_workspace_and_comes_back_whole(workspace, name, key):
    assert qualified(workspace, name) == key
    assert workspace_and_name(key) == (workspace or "default", name)


def test_the_same_name_in_two_workspaces_gives_two_keys():
    assert len({qualified("", "alice"), qualified("team-a", "alice"), qualified("team-b", "alice"),
                qualified("", "team-a:alice")}) == 4
