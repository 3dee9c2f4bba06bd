"""test_kernel.py and test_kernel_fuzz.py again, with the kernel on its other transport.

The default transport runs them in their own modules; here every Node the tests start
gets `[kernel] transport` set to the one that is not the default, so both transports
are held to the same behaviour.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from test_kernel import *  # noqa: F403 - the tests themselves, rerun here
from test_kernel_fuzz import *  # noqa: F403

from porch.kernel.router import TRANSPORTS
from porch.node.config import KernelSettings
from support.node import Node

OTHER = next(t for t in TRANSPORTS if t != KernelSettings().transport)


@pytest.fixture(scope="module", autouse=True)
def other_transport() -> Iterator[None]:
    saved = Node.kernel_transport
    Node.kernel_transport = OTHER
    try:
        yield
    finally:
        Node.kernel_transport = saved


def test_the_kernel_runs_on_the_other_transport(node: Node) -> None:
    node.wait_log("kernel", f"kernel transport: {OTHER}")
