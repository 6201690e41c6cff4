"""Durability tests: kill -9 crashes, Redis restarts, corrupted journals and snapshots."""
