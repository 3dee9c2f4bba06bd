from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.node import Node


@pytest.fixture
def node() -> Iterator[Node]:
    """A running kernel in a fresh home; start more services with node.start(...)."""
    n = Node()
    n.start("kernel")
    try:
        yield n
    finally:
        n.close()
