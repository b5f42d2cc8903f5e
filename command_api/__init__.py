"""Write side: validates transactions and appends them as events to the Kafka log."""
