"""The link between a process and the kernel: ZMTP 3.1 on the node's Unix socket.

The bottom of the house: bytes and frames only, no envelopes, nothing of porch but
the wire's clock. The kernel composes the ROUTER end (`server.ZmtpServer`); every
process's stub composes a DEALER end (`dealer.Dealer`, driven by asyncio or by the
blocking calls); both share the codec (`codec.Session`, `codec.OutQueue`). Any
ZeroMQ DEALER (libzmq, through pyzmq or any other binding) can connect to the kernel:
the protocol is ZeroMQ's own.
"""
