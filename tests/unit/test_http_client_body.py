"""Response bodies in the http-client: small ones in memory, large ones in a memfd,
all within the in-flight byte budget (issue 10 item 1)."""

from __future__ import annotations

import os

import pytest

from porch.http_client.body import BodyCollector, InflightBudget
from porch.http_client.settings import HttpClientSettings
from porch.link.fds import FD_BLOB_MIN, BlobFile, read_blob_fd
from porch.node.config import ConfigError


def test_a_small_body_stays_bytes_and_gives_its_budget_back() -> None:
    budget = InflightBudget(100)
    c = BodyCollector(budget)
    assert c.add(b"abc") and c.add(b"de")
    body = c.finish()
    assert body.data == b"abcde" and budget.used == 5
    body.release()
    body.release()  # once only
    assert budget.used == 0


def test_a_body_reaching_the_threshold_moves_into_a_sealed_memfd() -> None:
    budget = InflightBudget(10 * FD_BLOB_MIN)
    c = BodyCollector(budget)
    first, rest = os.urandom(FD_BLOB_MIN - 1), os.urandom(FD_BLOB_MIN)
    assert c.add(first) and c.add(rest)
    body = c.finish()
    assert isinstance(body.data, BlobFile) and body.size == len(first + rest)
    assert read_blob_fd(body.data.fd, body.size) == first + rest
    fd = body.data.fd
    body.release()
    with pytest.raises(OSError):
        os.fstat(fd)  # closed: nobody sent it
    assert budget.used == 0


def test_the_budget_refuses_a_piece_that_would_pass_it_and_discard_frees_all() -> None:
    budget = InflightBudget(10)
    a, b = BodyCollector(budget), BodyCollector(budget)
    assert a.add(b"123456")
    assert not b.add(b"12345"), "6 + 5 > 10"
    assert b.add(b"1234") and budget.used == 10
    a.discard()
    assert budget.used == 4
    assert b.finish().size == 4


def test_the_inflight_limit_defaults_to_four_bodies_and_never_below_one() -> None:
    assert HttpClientSettings().inflight_limit == 4 * HttpClientSettings().max_response_bytes
    assert HttpClientSettings(max_inflight_bytes=100 * 2**20).inflight_limit == 100 * 2**20
    with pytest.raises(ConfigError, match="max_inflight_bytes"):
        HttpClientSettings(max_response_bytes=1000, max_inflight_bytes=999)


def test_a_body_of_exactly_the_threshold_goes_into_a_memfd_and_keeps_growing_there() -> None:
    budget = InflightBudget(10 * FD_BLOB_MIN)
    exact = BodyCollector(budget)
    assert exact.add(b"e" * FD_BLOB_MIN)
    at_threshold = exact.finish()
    assert isinstance(at_threshold.data, BlobFile) and at_threshold.data.size == FD_BLOB_MIN
    at_threshold.release()
    c = BodyCollector(budget)
    assert c.add(b"a" * (FD_BLOB_MIN - 10)) and c.add(b"b" * 10)
    assert c.add(b"c" * 5) and c.add(b"d")
    body = c.finish()
    assert isinstance(body.data, BlobFile)
    assert body.size == body.data.size == FD_BLOB_MIN + 6
    assert read_blob_fd(body.data.fd, body.size) == b"a" * (FD_BLOB_MIN - 10) + b"b" * 10 + b"ccccc" + b"d"
    assert os.readlink(f"/proc/self/fd/{body.data.fd}").startswith("/memfd:porch-http-body "), \
        "named for who looks at the process's descriptors"
    body.release()
    assert budget.used == 0
