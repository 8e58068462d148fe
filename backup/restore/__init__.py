"""Restores: a full restore into n8n in a container (its SQLite file or PostgreSQL database,
with a journal, rollback copies and fault points), and the workflows-only restore through the
API."""
