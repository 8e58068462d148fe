"""Snapshots and keys off the host, in restic repositories (encrypted, deduplicated)."""
