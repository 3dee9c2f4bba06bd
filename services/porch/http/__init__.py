"""HTTP helpers for processes, mirroring kinode_process_lib::http: `porch.http.server`
(bind paths, answer requests, push to WebSockets) and `porch.http.client` (outgoing
requests and WebSocket connections through http-client:distro:sys)."""
