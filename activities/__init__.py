"""Temporal activities of memsaga: thin adapters from workflow steps to the stores."""
