"""The kernel's side of several http-server workers (issue 12 item 3, docs/workers.md):
a node service's process may join the live holder of its id as a member
(Register.member_of, with the token). A member sends as the id and receives the
answers to its own requests; requests for the id reach the holder only; the registry
lists the id once; a member's end is no exit; the holder's end supersedes its members;
a member of a holder that is not there is refused, and its stub keeps trying."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import pytest

import porch
from porch.node.service_token import ENV_SERVICE_TOKEN
from porch.process.message import KernelRefused, KernelUnreachable
from support.node import Node

T = TypeVar("T")
SERVICE = "http-server:distro:sys"
HOLDER = """
    import asyncio, porch

    async def main():
        proc = await porch.AsyncProcess.connect()
        proc.on_request(lambda msg: proc.respond(msg, b"the holder answers"))
        print("READY", flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
"""


@pytest.fixture
def node() -> Iterator[Node]:
    n = Node('node = "test.os"\n[[process]]\nid = "app:mem:test"\n'
             'capabilities = ["http-server:distro:sys"]\n')
    n.start("kernel")
    try:
        yield n
    finally:
        n.close()


@pytest.fixture
def token(node: Node, monkeypatch: pytest.MonkeyPatch) -> str:
    value = node.home.service_token.read_text().strip()
    monkeypatch.setenv(ENV_SERVICE_TOKEN, value)
    return value


def run(main: Callable[[], Awaitable[T]]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(main(), 60)
    return asyncio.run(bounded())


def test_a_member_speaks_as_the_id_and_gets_its_answers(node: Node, token: str) -> None:
    home = node.home.root

    async def main() -> None:
        app = await porch.AsyncProcess.connect("app:mem:test", home=home, connect_timeout=10)
        asked: asyncio.Queue[porch.Message] = asyncio.Queue()
        app.on_request(asked.put_nowait)
        holder = node.spawn(SERVICE, HOLDER, **{ENV_SERVICE_TOKEN: token})
        await asyncio.to_thread(node.wait_log, SERVICE, "READY")
        member = await porch.AsyncProcess.connect(SERVICE, home=home, connect_timeout=10,
                                                  member_of=holder.pid)
        superseded: list[bool] = []
        member.on_superseded(lambda: superseded.append(True))
        member_got: list[porch.Message] = []
        member.on_request(member_got.append)

        # What the member sends goes out as the id; the answer comes back to it.
        _, answer = member.request_future("app:mem:test", b"from a member", timeout=10)
        msg = await asyncio.wait_for(asked.get(), 5)
        assert msg.source == SERVICE and msg.body == b"from a member"
        app.respond(msg, b"to the member")
        assert (await answer).body == b"to the member"

        # Requests for the id reach the holder only.
        for _ in range(5):
            reply = await app.send_and_await_response(SERVICE, b"hello", timeout=10)
            assert reply.body == b"the holder answers"
        assert member_got == []

        # The registry lists the id once: its holder.
        everyone = await app.registry()
        assert [e.process_id for e in everyone.entries].count(SERVICE) == 1
        assert [e.os_pid for e in (await app.registry(process_id=SERVICE)).entries] == [holder.pid]

        # The holder's end supersedes its member (which then finishes and goes).
        holder.kill()
        for _ in range(50):
            if superseded:
                break
            await asyncio.sleep(0.1)
        assert superseded == [True]
        member.close()
        app.close()

    run(main)


def test_joining_needs_the_token_and_a_live_holder_of_that_pid(node: Node, token: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    home = node.home.root
    holder = node.spawn(SERVICE, HOLDER, **{ENV_SERVICE_TOKEN: token})
    node.wait_log(SERVICE, "READY")

    async def main() -> None:
        # A wrong pid (or no holder at all): refused, and a member stub keeps trying
        # until its connect_timeout.
        with pytest.raises(KernelUnreachable):
            await porch.AsyncProcess.connect(SERVICE, home=home, connect_timeout=1,
                                             member_of=holder.pid + 100_000)
        # An id that is not a service's: the reserved-id rule is the only way in.
        with pytest.raises(KernelRefused):
            await porch.AsyncProcess.connect("app:mem:test", home=home, connect_timeout=5,
                                             member_of=os.getpid())
        monkeypatch.delenv(ENV_SERVICE_TOKEN)
        with pytest.raises(KernelRefused):
            await porch.AsyncProcess.connect(SERVICE, home=home, connect_timeout=5, member_of=holder.pid)

    run(main)
