import pytest

from porch.address import InvalidProcessId, ProcessId, is_valid


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
