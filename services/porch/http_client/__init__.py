"""The http-client service (`http-client:distro:sys`): outgoing HTTP requests and
WebSocket connections on behalf of the processes that ask (docs/kinode.md §6).

Pure parts (unit-tested without sockets): `settings`, `policy`, `validate`,
`headers`, `results`, `channels`. I/O: `fetch` (requests in a thread pool, with the
`watchdog` enforcing deadlines), `websockets` (Tornado's client on the asyncio loop) and
`service` (the message loop that ties them to the kernel).
"""
