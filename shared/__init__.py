"""What the write side and the read side share: event schema, settings, auth, errors, logging."""
