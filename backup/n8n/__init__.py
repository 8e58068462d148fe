"""The n8n core: its public API, its databases (SQLite, PostgreSQL) and data folder, its
containers, the credential cipher, the npm runtime installer, instance drivers that boot it, and
what a running n8n serves and decrypts."""
