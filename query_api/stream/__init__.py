"""Live statistics: `GET /stats/stream` (Server-Sent Events) and the dashboard page."""
