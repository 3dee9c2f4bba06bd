"""The [http_client] table: defaults, types, and mistakes reported with their place."""

import pytest

from porch.http_client.settings import HttpClientSettings, load_settings
from porch.node.config import ConfigError, parse


def test_defaults() -> None:
    s = load_settings(parse("").http_client)
    assert s == HttpClientSettings()
    assert s.max_redirects == 10 and s.max_response_bytes == 64 * 1024 * 1024
    assert s.ws_send_queue_bytes == 4 * 1024 * 1024
    assert s.policy().allows_everything


def test_values_from_porch_toml() -> None:
    cfg = parse('[http_client]\nmax_response_bytes = 1000\nworkers = 4\ndefault_timeout_s = 2\n'
                'deny_private = true\nallow_hosts = ["api.example"]\n')
    s = load_settings(cfg.http_client)
    assert (s.max_response_bytes, s.workers, s.default_timeout_s) == (1000, 4, 2.0)
    assert s.allow_hosts == ("api.example",)
    assert s.policy().check("127.0.0.1") is not None


@pytest.mark.parametrize("text, fragment", [
    ("max_respons_bytes = 1", "unknown setting(s) max_respons_bytes"),
    ("workers = 'many'", "expected int"),
    ("workers = 0", "workers must be at least 1"),
    ("max_waiting_requests = 0", "max_waiting_requests must be at least 1"),
    ("max_redirects = -1", "max_redirects must be 0 or more"),
    ("default_timeout_s = 0", "default_timeout_s must be more than 0"),
    ("ws_send_queue_bytes = 0", "ws_send_queue_bytes must be at least 1"),
    ('deny_networks = ["10.0.0.0/40"]', "deny_networks"),
    ('allow_hosts = "api.example"', "expected a list"),
])
def test_mistakes(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(parse("[http_client]\n" + text).http_client)
    assert fragment in str(err.value)
