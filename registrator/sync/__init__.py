"""State and its owners: the container records, the work queue, the reconciling with the
agent and the writes. May import the adapters and the core."""
