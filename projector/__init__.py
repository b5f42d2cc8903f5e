"""Folds the event log into the statistics projection, exactly once; rebuilds it on demand."""
