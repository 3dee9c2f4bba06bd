"""The kernel service (kernel:distro:sys): registry, capabilities, routing, deadlines."""
