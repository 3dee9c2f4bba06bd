"""The node: home directory, config, supervision, and the `porch` command."""
