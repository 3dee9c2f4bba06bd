"""[http_server] workers (issue 12 item 3, docs/workers.md): 0 is a quarter of the
cores, 1 to 4; anything else is taken as given, within 1-64."""

from __future__ import annotations

import pytest

from porch.http_server.settings import load_settings
from porch.node.config import ConfigError


@pytest.mark.parametrize(("cores", "count"),
                         [(1, 1), (2, 1), (4, 1), (7, 1), (8, 2), (12, 3), (16, 4), (64, 4)])
def test_the_default_is_a_quarter_of_the_cores_within_1_to_4(cores: int, count: int) -> None:
    assert load_settings({}).worker_count(cores) == count


def test_a_number_is_taken_as_given() -> None:
    assert load_settings({"workers": 3}).worker_count(2) == 3
    for bad in (-1, 65):
        with pytest.raises(ConfigError, match="workers"):
            load_settings({"workers": bad})
