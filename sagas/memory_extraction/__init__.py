"""The memory-extraction saga's domain: its events, streams and pure decisions."""
