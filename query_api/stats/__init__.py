"""Statistics: `GET /stats`, all-time or over a sliding window, with read-your-writes."""
