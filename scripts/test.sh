#!/usr/bin/env bash
# The project's tests: lint, types, unit tests and end-to-end tests on real n8n.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
.venv/bin/ruff format --check backup verify tests conftest.py
.venv/bin/ruff check backup verify tests conftest.py
.venv/bin/mypy backup verify
# Install the n8n runtimes up front (cached per user) so that the tests' own timings stay sane.
.venv/bin/n8n-backup runtime install 2.40.7 --quiet
# The docker runtime: an engine, and an n8n image built locally (no registry is reachable).
./scripts/docker-engine.sh
./scripts/build-n8n-image.sh 2.40.7
exec .venv/bin/pytest tests "$@"
