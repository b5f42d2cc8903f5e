"""In-memory test doubles of the services' ports, with test controls."""
