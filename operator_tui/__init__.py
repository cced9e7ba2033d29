"""Operator: an AI operator for distributed systems (the core: store, monitor, agent, actions)."""

__version__ = "0.1.0"
