"""Adapters of the query API's ports (PostgreSQL, Prometheus)."""
