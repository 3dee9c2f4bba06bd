from collections.abc import Callable

import pytest

from porch.address import SHOWN, InvalidProcessId, ProcessId, is_valid, validate


@pytest.mark.parametrize("text", ["chess:chess:sys", "a-1:b-2:pub.os", "x:y:z", "0:0:0.0-"])
def test_kimap_safe_ids_parse(text: str) -> None:
    assert str(ProcessId.parse(text)) == text


@pytest.mark.parametrize("text", [
    "My_App:pkg:pub.os",      # upper case and underscore
    "app:pkg",                # two parts
    "a:b:c:d",                # four parts
    "app:pk.g:pub",           # dot in package
    ":pkg:pub", "app::pub", "app:pkg:",
    "app:pkg:pub os",
])
def test_unsafe_ids_are_refused(text: str) -> None:
    assert not is_valid(text)
    with pytest.raises(InvalidProcessId):
        ProcessId.parse(text)


def test_package_id() -> None:
    assert ProcessId.parse("chess:chess:template.os").package_id == "chess:template.os"


def test_each_part_is_bounded() -> None:
    """Issue 9 item 13: a 100 KB id never registers; the bounds are exact."""
    from porch.address import MAX_NAME, MAX_PUBLISHER, is_valid

    assert is_valid(f"{'a' * MAX_NAME}:{'b' * MAX_NAME}:{'c' * MAX_PUBLISHER}")
    assert not is_valid(f"{'a' * (MAX_NAME + 1)}:b:c")
    assert not is_valid(f"a:{'b' * (MAX_NAME + 1)}:c")
    assert not is_valid(f"a:b:{'c' * (MAX_PUBLISHER + 1)}")
    assert not is_valid("x" * 100_000 + ":demo:sys")
    with pytest.raises(InvalidProcessId) as err:
        ProcessId.parse("x" * 100_000 + ":demo:sys")
    assert len(str(err.value)) < 300, "the error does not carry the whole id"


def test_reserved_ids_are_the_distro_sys_package() -> None:
    from porch.address import is_reserved

    for text in ("http-server:distro:sys", "http-client:distro:sys", "rpc:distro:sys",
                 "anything:distro:sys", "kernel:distro:sys"):
        assert is_reserved(text), text
    for text in ("hello:hello:sys", "distro:sys:x", "a:distro:sysx", "a:xdistro:sys",
                 "a:b:distro:sys"):
        assert not is_reserved(text), text


@pytest.mark.parametrize("make, reason", [
    (lambda n: "a" * n, "three parts"),                                  # one part
    (lambda n: "A" * (n - 4) + ":b:c", "name and package must match"),
    (lambda n: "a:b:" + "C" * (n - 4), "publisher must match"),
])
def test_an_error_repeats_the_id_cut_to_a_bound(make: Callable[[int], str], reason: str) -> None:
    """The kernel sends this text to the process that asked: a refused id of any size
    is shown whole up to SHOWN characters, else its first SHOWN and "..."."""
    for n in (SHOWN, SHOWN + 1, 100_000):
        text = make(n)
        with pytest.raises(InvalidProcessId) as err:
            ProcessId.parse(text)
        shown = text if n <= SHOWN else text[:SHOWN] + "..."
        assert f"process id {shown!r}" in str(err.value), n
        assert reason in str(err.value)


def test_an_error_says_the_bound_each_part_broke() -> None:
    with pytest.raises(InvalidProcessId, match="at most 64 characters each"):
        ProcessId.parse("a:b_:c")
    with pytest.raises(InvalidProcessId, match="at most 253 characters"):
        ProcessId.parse("a:b:c_")


def test_validate_gives_the_id_back_or_raises() -> None:
    assert validate("chess:chess:sys") == "chess:chess:sys"
    with pytest.raises(InvalidProcessId):
        validate("chess:chess")
