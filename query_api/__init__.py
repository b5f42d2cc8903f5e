"""Read side: serves statistics from the PostgreSQL projection."""
