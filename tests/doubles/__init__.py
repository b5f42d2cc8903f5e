"""In-memory test doubles: fakes behind the production ports, with controls for tests."""
