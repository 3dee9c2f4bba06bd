"""The ground every service stands on: the node home, its config, service start-up and logs."""
