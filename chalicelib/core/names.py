"""How a gateway's names become the keys Bandwidth Meter counts under.

Kong 3.7+ labels each series with its workspace, and the same service or consumer name in two
workspaces is two different things. A name from the ``default`` workspace (or from a gateway
without workspaces) is kept as it is; any other is ``<workspace>:<name>``. Kong does not allow
``:`` in a workspace name, so the first ``:`` always ends the workspace. A ``default``-workspace
name that itself holds a ``:`` (a consumer's username may) is spelled ``default:<name>``, so it
can never be mistaken for another workspace's.
"""
from __future__ import annotations

from typing import Tuple

DEFAULT_WORKSPACE = "default"
SEPARATOR = ":"


def qualified(workspace: str, name: str) -> str:
    """The key ``name`` of ``workspace`` is counted under ("" is the default workspace)."""
    workspace = workspace or DEFAULT_WORKSPACE
    if workspace == DEFAULT_WORKSPACE and SEPARATOR not in name:
        return name
    return f"{workspace}{SEPARATOR}{name}"


def workspace_and_name(key: str) -> Tuple[str, str]:
    """The (workspace, name) a key stands for: the inverse of ``qualified``."""
    workspace, separator, name = key.partition(SEPARATOR)
    if not separator:
        return DEFAULT_WORKSPACE, key
    return workspace, name
