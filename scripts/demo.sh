#!/usr/bin/env bash
# The embedded default: a throwaway n8n with sample workflows and credentials is snapshotted
# and verified in a fresh n8n; the HTML report lands in reports/.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/n8n-demo "$@"
