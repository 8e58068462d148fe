#!/usr/bin/env bash
# Build a local n8n image that behaves like the official one, for machines that reach no
# container registry: a Debian base made with debootstrap, plus the npm-installed runtime.
#   scripts/build-n8n-image.sh [VERSION]   -> prints the image name as its last line
#   scripts/build-n8n-image.sh --base-only -> only the Debian base (for other local images)
# Cached: an image that exists already is reused (docker keeps it across runs on one machine).
set -euo pipefail
cd "$(dirname "$0")/.."
# Without an engine, "image missing" would be a wrong guess that starts a long rebuild.
docker info >/dev/null 2>&1 || { echo "build-n8n-image: no Docker engine answers: run scripts/docker-engine.sh" >&2; exit 1; }
# Stage lines on a terminal only: in a pipe or a log, just the image name (or an error).
progress() { if [ -t 2 ]; then echo "build-n8n-image: $*" >&2; fi; }
base_only=false
if [ "${1:-}" = "--base-only" ]; then
    base_only=true
    shift
fi
version="${1:-2.40.7}"
base="n8n-restore-verify/debian-base:bookworm"
image="n8n-restore-verify/n8n:${version}"

if ! $base_only && docker image inspect "$image" >/dev/null 2>&1; then
    echo "$image"
    exit 0
fi

if ! docker image inspect "$base" >/dev/null 2>&1; then
    command -v debootstrap >/dev/null || { apt-get update -qq; apt-get install -y -qq debootstrap; }
    # The machine's own Debian mirror, as apt is configured to use it.
    mirror=$(grep -hoE '^(URIs:|deb) +[^ ]+' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
        | awk '{print $2}' | grep -v -- '-security' | grep -i debian | head -n 1 || true)
    [ -n "$mirror" ] || { echo "build-n8n-image: no Debian mirror in the apt sources" >&2; exit 1; }
    rootfs=$(mktemp -d)
    trap 'rm -rf "$rootfs"' EXIT
    progress "debootstrap bookworm from the apt mirror"
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >/dev/null
    tar -C "$rootfs" -c . | docker import - "$base" >/dev/null
fi

if $base_only; then
    echo "$base"
    exit 0
fi

runtime_launcher=$(.venv/bin/n8n-backup install-n8n "$version" | tail -n 1)
runtime_dir=$(dirname "$(dirname "$runtime_launcher")")
progress "building $image from $runtime_dir (several minutes: 2.8 GB)"
build_log=$(mktemp)
if ! docker build --quiet --build-arg BASE_IMAGE="$base" -f docker/Dockerfile -t "$image" \
        "$runtime_dir" >"$build_log" 2>&1; then
    cat "$build_log" >&2
    rm -f "$build_log"
    exit 1
fi
rm -f "$build_log"
echo "$image"
