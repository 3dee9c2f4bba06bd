"""The http-server service (http-server:distro:sys): bindings, routing, login, bridging
HTTP requests to the processes that bound their paths."""
