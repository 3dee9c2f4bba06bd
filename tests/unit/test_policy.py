import pytest

from porch.kernel.policy import CapabilityPolicy

SERVER = "http-server:distro:sys"
CLIENT = "http-client:distro:sys"


def test_services_are_not_public_without_a_grant() -> None:
    policy = CapabilityPolicy({"app:a:sys": [SERVER]})
    assert policy.allows("app:a:sys", SERVER)
    assert not policy.allows("app:a:sys", CLIENT)
    assert not policy.allows("other:a:sys", SERVER)


def test_user_processes_are_public_by_default_and_private_on_request() -> None:
    policy = CapabilityPolicy({"friend:a:sys": ["vault:a:sys"]}, private=["vault:a:sys"])
    assert policy.allows("x:a:sys", "app:a:sys")
    assert not policy.allows("x:a:sys", "vault:a:sys")
    assert policy.allows("friend:a:sys", "vault:a:sys")


def test_system_services_may_message_anyone() -> None:
    policy = CapabilityPolicy(private=["vault:a:sys"])
    assert policy.allows(SERVER, "vault:a:sys")
    assert policy.allows(CLIENT, "app:a:sys")


def test_kernel_is_never_a_message_target() -> None:
    assert not CapabilityPolicy().allows("app:a:sys", "kernel:distro:sys")


def test_grants_are_what_the_config_gave_and_nothing_for_others() -> None:
    policy = CapabilityPolicy({"app:a:sys": [SERVER, "vault:a:sys"]})
    assert policy.grants_of("app:a:sys") == frozenset({SERVER, "vault:a:sys"})
    assert policy.grants_of("other:a:sys") == frozenset()


def test_a_pair_is_decided_once_then_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    policy = CapabilityPolicy({"friend:a:sys": ["vault:a:sys"]}, private=["vault:a:sys"])
    decided: list[tuple[str, str]] = []
    decide = policy._decide
    monkeypatch.setattr(policy, "_decide", lambda s, t: decided.append((s, t)) or decide(s, t))
    for _ in range(3):
        assert policy.allows("friend:a:sys", "vault:a:sys")
        assert not policy.allows("x:a:sys", "vault:a:sys")
    assert decided == [("friend:a:sys", "vault:a:sys"), ("x:a:sys", "vault:a:sys")]


def test_the_verdict_cache_stays_bounded_and_right() -> None:
    """Source and target ids are the senders' choice: the cache of verdicts is
    emptied past 100 000 pairs, and verdicts stay right across that."""
    policy = CapabilityPolicy({"friend:a:sys": ["vault:a:sys"]}, private=["vault:a:sys"])
    assert not policy.allows("x:a:sys", "vault:a:sys")
    for i in range(100_001):
        policy.allows(f"p{i}:a:sys", "app:a:sys")
        assert len(policy._cache) <= 100_001
    assert len(policy._cache) < 100_001, "emptied once past the bound"
    assert policy.allows("friend:a:sys", "vault:a:sys")
    assert not policy.allows("x:a:sys", "vault:a:sys")
