"""The verify suite: ``pytest verify`` restores snapshots into fresh n8n and checks them."""
