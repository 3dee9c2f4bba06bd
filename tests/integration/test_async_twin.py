"""AsyncProcess does what Process does, with the same calls (issue 11 item 5): a
request sent with expects_response is answered through await_message (its SendError
raised there), await_message times out like the blocking one, respond takes the
request first and has no "last request" to default to. Real kernel, real processes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

import porch
from support.node import Node

ECHO = """
    import porch
    p = porch.Process()
    while True:
        m = p.await_message()
        p.respond(m, b"echo:" + m.body)
"""


@pytest.fixture(scope="module")
def node() -> Iterator[Node]:
    n = Node()
    n.start("kernel")
    n.spawn("echo:demo:sys", ECHO)
    try:
        n.wait_registered("echo:demo:sys")
        yield n
    finally:
        n.close()


def test_expects_response_answers_through_await_message(node: Node) -> None:
    async def main() -> None:
        async with await porch.AsyncProcess.connect("twin:demo:sys", home=node.home.root,
                                                    connect_timeout=10) as proc:
            asked = proc.send_request("echo:demo:sys", b"a", expects_response=5)
            reply = await proc.await_message(timeout=10)
            assert (reply.id, reply.body, reply.is_response) == (asked, b"echo:a", True)
            missing = proc.send_request("nobody:demo:sys", b"b", expects_response=5)
            with pytest.raises(porch.Offline) as off:
                await proc.await_message(timeout=10)
            assert off.value.id == missing
            with pytest.raises(porch.Timeout) as quiet:
                await proc.await_message(timeout=0.2)
            assert quiet.value.id == 0
            # With a request handler set, requests go to it and responses still here.
            handled: list[bytes] = []
            proc.on_request(lambda m: handled.append(m.body) or proc.respond(m, b"seen"))
            proc.send_request("echo:demo:sys", b"c", expects_response=5)
            assert (await proc.await_message(timeout=10)).body == b"echo:c"
            blocking = await asyncio.to_thread(node.process, "twinb:demo:sys")
            reply = await asyncio.to_thread(blocking.send_and_await_response, "twin:demo:sys", b"q")
            assert (reply.body, handled) == (b"seen", [b"q"])

    asyncio.run(main())


def test_respond_needs_the_request_and_takes_it_first(node: Node) -> None:
    async def main() -> None:
        proc = await porch.AsyncProcess.connect("twin2:demo:sys", home=node.home.root, connect_timeout=10)
        try:
            with pytest.raises(porch.PorchError, match="no request to answer"):
                proc.respond(body=b"to whom?")
            asker = await asyncio.to_thread(node.process, "twin2b:demo:sys")
            asked = asyncio.ensure_future(asyncio.to_thread(asker.send_and_await_response,
                                                            "twin2:demo:sys", b"q", timeout=10))
            msg = await proc.await_message(timeout=10)
            with pytest.warns(DeprecationWarning), pytest.raises(porch.PorchError):
                proc.respond(b"the old form has no request here")  # type: ignore[arg-type]
            assert proc.respond(msg, b"answer") is True
            assert (await asked).body == b"answer"
        finally:
            proc.close()

    asyncio.run(main())
