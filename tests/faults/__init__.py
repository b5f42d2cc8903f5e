"""Fault and attack suite: real processes on a private Kafka + PostgreSQL."""
