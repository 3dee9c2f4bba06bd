"""The kernel's side of a graceful http-server restart (issue 10 items 4 and 6), with a
real kernel and asyncio stubs:

- a node service's new process takes its id over from the live one (Register.takeover,
  token required); the old one is told (Superseded), receives nothing new, but still
  answers what it holds and receives the answers to its own requests; its end is no
  exit for watchers of the id;
- without the token, or for an id that is not a service's, a second registration is
  still refused;
- a fire-and-forget request marked report_undelivered that the kernel cannot deliver is
  reported to its sender (Offline) instead of vanishing;
- the registry can be asked about one process.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import pytest

import porch
from porch.node.service_token import ENV_SERVICE_TOKEN
from porch.process.message import KernelRefused, Offline, SendError
from support.node import Node

T = TypeVar("T")
SERVICE = "http-server:distro:sys"
# The holder that is taken over: another OS process (the kernel treats a second
# connection of the same process as that process reconnecting).
OLD = """
    import asyncio, signal, porch

    async def main():
        proc = await porch.AsyncProcess.connect()
        held = []
        def hold(msg):
            held.append(msg)
            print("HELD", msg.body.decode(), flush=True)
        proc.on_request(hold)
        proc.on_superseded(lambda: print("SUPERSEDED", flush=True))
        def answer():
            for msg in held:
                proc.respond(msg, b"old answers")
            print("ANSWERED", len(held), flush=True)
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, answer)
        print("READY", flush=True)
        try:
            reply = await proc.request("app:take:test", b"from the old one", timeout=30)
            print("OLD GOT", reply.body.decode(), flush=True)
        except Exception as exc:
            print("OLD FAILED", exc, flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
"""
HOLDER = """
    import time, porch
    porch.Process()
    print("READY", flush=True)
    time.sleep(3600)
"""


@pytest.fixture
def node() -> Iterator[Node]:
    """A kernel; app:take:test may message the http-server's id (a service id is never
    public)."""
    n = Node('node = "test.os"\n[[process]]\nid = "app:take:test"\n'
             'capabilities = ["http-server:distro:sys"]\n')
    n.start("kernel")
    try:
        yield n
    finally:
        n.close()


def run(main: Callable[[], Awaitable[T]]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(main(), 60)
    return asyncio.run(bounded())


@pytest.fixture
def token(node: Node, monkeypatch: pytest.MonkeyPatch) -> str:
    value = node.home.service_token.read_text().strip()
    monkeypatch.setenv(ENV_SERVICE_TOKEN, value)
    return value


def test_takeover_hands_new_requests_over_and_lets_the_old_finish(node: Node, token: str) -> None:
    home = node.home.root

    async def main() -> None:
        app = await porch.AsyncProcess.connect("app:take:test", home=home, connect_timeout=10)
        app_got: asyncio.Queue[porch.Message] = asyncio.Queue()
        app.on_request(app_got.put_nowait)
        watcher = await porch.AsyncProcess.connect("watcher:take:test", home=home, connect_timeout=10)
        old = node.spawn(SERVICE, OLD, **{ENV_SERVICE_TOKEN: token})
        await asyncio.to_thread(node.wait_log, SERVICE, "READY")
        exits: list[str] = []
        watcher.watch(SERVICE, exits.append)
        # In flight across the takeover, both ways: the old one asked the app, and the
        # app asks the old one.
        asked = await asyncio.wait_for(app_got.get(), 5)
        assert asked.body == b"from the old one"
        _, app_waits = app.request_future(SERVICE, b"held", timeout=20)
        await asyncio.to_thread(node.wait_log, SERVICE, "HELD held")

        new = await porch.AsyncProcess.connect(SERVICE, home=home, connect_timeout=10, takeover=True)
        fresh: asyncio.Queue[porch.Message] = asyncio.Queue()
        new.on_request(fresh.put_nowait)
        assert new.took_over
        await asyncio.to_thread(node.wait_log, SERVICE, "SUPERSEDED")

        # New requests go to the new one only.
        _, later = app.request_future(SERVICE, b"after the takeover", timeout=10)
        got = await asyncio.wait_for(fresh.get(), 5)
        assert got.body == b"after the takeover"
        new.respond(got, b"new answers")
        assert (await later).body == b"new answers"
        assert "HELD after" not in node.log(SERVICE)

        # The old one still answers what it holds, and gets its own answers.
        old.send_signal(signal.SIGUSR1)
        assert (await asyncio.wait_for(app_waits, 5)).body == b"old answers"
        app.respond(asked, b"to the old one")
        await asyncio.to_thread(node.wait_log, SERVICE, "OLD GOT to the old one")

        # One entry in the registry, the new one; the old one leaving is no exit.
        registry = await app.registry(process_id=SERVICE)
        assert [e.os_pid for e in registry.entries] == [os.getpid()]
        everyone = await app.registry()
        assert [e.process_id for e in everyone.entries].count(SERVICE) == 1
        old.kill()
        await asyncio.sleep(0.5)
        assert exits == []
        _, still = app.request_future(SERVICE, b"still there?", timeout=10)
        new.respond(await asyncio.wait_for(fresh.get(), 5), b"yes")
        assert (await still).body == b"yes"
        new.close()
        for _ in range(200):  # (the notice comes when the kernel sees the close)
            if exits:
                break
            await asyncio.sleep(0.05)
        assert exits == [SERVICE], "the id's last holder leaving is its exit"
        for p in (app, watcher):
            p.close()

    run(main)


def test_takeover_needs_the_token_and_a_service_id(node: Node, token: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    home = node.home.root
    plain = node.spawn("plain:take:test", HOLDER)
    service = node.spawn(SERVICE, HOLDER, **{ENV_SERVICE_TOKEN: token})
    node.wait_log("plain:take:test", "READY")
    node.wait_log(SERVICE, "READY")

    async def main() -> None:
        with pytest.raises(KernelRefused) as refused:
            await porch.AsyncProcess.connect("plain:take:test", home=home, connect_timeout=10,
                                             takeover=True)
        assert refused.value.code == "AlreadyRegistered"
        monkeypatch.setenv(ENV_SERVICE_TOKEN, "not-the-token")
        with pytest.raises(KernelRefused) as forged:
            await porch.AsyncProcess.connect(SERVICE, home=home, connect_timeout=10, takeover=True)
        assert forged.value.code == "ReservedProcessId"
        app = await porch.AsyncProcess.connect("app:take:test", home=home, connect_timeout=10)
        registry = await app.registry(process_id=SERVICE)
        assert [e.os_pid for e in registry.entries] == [service.pid]
        registry = await app.registry(process_id="plain:take:test")
        assert [e.os_pid for e in registry.entries] == [plain.pid]
        app.close()

    run(main)


def test_undeliverable_fire_and_forget_is_reported_when_asked(node: Node) -> None:
    home = node.home.root

    async def main() -> None:
        sender = await porch.AsyncProcess.connect("sender:take:test", home=home, connect_timeout=10)
        reports: asyncio.Queue[SendError] = asyncio.Queue()
        sender.on_undelivered(reports.put_nowait)
        sender.send_request("nobody:take:test", b"unseen")  # not asked: silence, as before
        asked = sender.send_request("nobody:take:test", b"tell me", report_undelivered=True)
        report = await asyncio.wait_for(reports.get(), 5)
        assert isinstance(report, Offline) and report.target == "nobody:take:test"
        assert report.id == asked and not report.delivered
        await asyncio.sleep(0.3)
        assert reports.empty()
        # Delivered: nothing to report.
        there = await porch.AsyncProcess.connect("there:take:test", home=home, connect_timeout=10)
        got: asyncio.Queue[porch.Message] = asyncio.Queue()
        there.on_request(got.put_nowait)
        sender.send_request("there:take:test", b"hello", report_undelivered=True)
        assert (await asyncio.wait_for(got.get(), 5)).body == b"hello"
        await asyncio.sleep(0.3)
        assert reports.empty()
        registry = await sender.registry(process_id="nobody:take:test")
        assert list(registry.entries) == []
        for p in (sender, there):
            p.close()

    run(main)
