"""Fault and attack suite (issue 8): real processes on a private Kafka + PostgreSQL."""
