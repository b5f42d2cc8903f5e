"""Adapters of the command API's ports (Kafka, in-memory)."""
