"""The absolute form of a request target (RFC 9112 3.2.2): the path and query the
gateway routes, and the authority the Host rules judge."""

from __future__ import annotations

import pytest

from porch.http_server.listener import absolute_target


@pytest.mark.parametrize("target, expected", [
    ("http://localhost:8080/app:pkg:pub.os/x?y=1", ("/app:pkg:pub.os/x?y=1", "localhost:8080")),
    ("https://node.example/", ("/", "node.example")),
    ("http://node.example", ("/", "node.example")),
    ("http://node.example?q=1", ("/?q=1", "node.example")),
    ("http://[::1]:8080/a", ("/a", "[::1]:8080")),
    ("http://user@localhost/a", ("/a", "user@localhost")),  # user info stays: the Host rules refuse it
    ("http:///a", ("/a", "")),  # no authority: an empty Host, refused
])
def test_path_and_authority(target: str, expected: tuple[str, str]) -> None:
    assert absolute_target(target) == expected
