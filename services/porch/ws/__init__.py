"""WebSocket frames and connections (RFC 6455, RFC 7692), shared by the http-server's
workers and by processes that hold their clients' sockets themselves
(docs/websockets.md). Nothing here imports the rest of porch."""
