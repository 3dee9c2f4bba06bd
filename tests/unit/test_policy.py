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
