"""Shared test support: real nodes in temporary homes, free ports, waiting helpers."""
