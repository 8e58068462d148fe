"""Instance drivers: boot n8n as a local process or in Docker, and wait until it is ready."""
