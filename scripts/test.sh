#!/usr/bin/env bash
# The project's tests: lint, types, unit tests and end-to-end tests on real n8n.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
# Debian's PostgreSQL 15 (n8n users run it): the tests start a server of their own with it.
if [ ! -x /usr/lib/postgresql/15/bin/postgres ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null
fi
.venv/bin/ruff format --check backup verify tests bench conftest.py
.venv/bin/ruff check backup verify tests bench conftest.py
.venv/bin/mypy backup verify
# Install the n8n runtimes up front (cached per user) so that the tests' own timings stay sane.
# The versions tested: 2.40.7 (default) and the last 1.x line.
versions=(2.40.7 1.123.81)
for version in "${versions[@]}"; do
    .venv/bin/n8n-backup runtime install "$version" --quiet
done
# The docker runtime: an engine, and n8n images built locally (no registry is reachable).
./scripts/docker-engine.sh
for version in "${versions[@]}"; do
    ./scripts/build-n8n-image.sh "$version"
done
./scripts/build-postgres-image.sh
exec .venv/bin/pytest tests "$@"
