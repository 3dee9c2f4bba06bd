"""The top of the house: the `porch` command and the supervision of a node.

`main` is the command tree (up, down, status, restart, logs, send, password, ...),
`supervise` renders supervisord's config and talks to it, `launch` starts a user
process from porch.toml, `procinfo` reads /proc. Nothing below imports from here:
the services stand on `porch.node` (home, config, startup, logs).
"""
