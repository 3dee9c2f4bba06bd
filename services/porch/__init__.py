"""porch: link this from a user process to talk to the node.

Blocking, like kinode_process_lib's await_message loop:

    import porch
    proc = porch.Process("echo:demo:sys")   # under `porch up`: porch.Process() reads $PORCH_PROCESS
    while True:
        msg = proc.await_message()
        proc.respond(msg, b"echo: " + msg.body)

asyncio, its twin (the same operations and arguments; those that wait are coroutines):

    proc = await porch.AsyncProcess.connect("web:demo:sys")
    reply = await proc.send_and_await_response("echo:demo:sys", b"hi", timeout=5)

HTTP helpers mirroring kinode_process_lib::http live in porch.http.

`porch.setup_logging()` makes the process log as the node does (text, or JSON lines
under `[logging] format = "json"`), each line of an HTTP request's handling with the
request's id.
"""

from porch.address import HTTP_CLIENT, HTTP_SERVER, KERNEL, InvalidProcessId, ProcessId
from porch.node.logs import RequestIdFilter
from porch.node.logs import setup_app_logging as setup_logging
from porch.process.aio import AsyncProcess
from porch.process.blocking import Process
from porch.process.message import (
    Blob,
    KernelRefused,
    KernelUnreachable,
    Message,
    NoCapability,
    Offline,
    PorchError,
    SendError,
    Timeout,
)

__all__ = [
    "HTTP_CLIENT",
    "HTTP_SERVER",
    "KERNEL",
    "AsyncProcess",
    "Blob",
    "InvalidProcessId",
    "KernelRefused",
    "KernelUnreachable",
    "Message",
    "NoCapability",
    "Offline",
    "PorchError",
    "Process",
    "ProcessId",
    "RequestIdFilter",
    "SendError",
    "Timeout",
    "setup_logging",
]
