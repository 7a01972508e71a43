"""The seed article's experiments, as functions that return data."""
