"""Ways to boot a fresh n8n on restored data."""
