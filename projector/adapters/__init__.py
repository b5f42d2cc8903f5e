"""Adapters of the projector's ports (PostgreSQL, in-memory)."""
