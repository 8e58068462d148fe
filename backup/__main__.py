"""``python -m backup`` runs the n8n-backup command line."""

import sys

from backup.cli import main

sys.exit(main())
