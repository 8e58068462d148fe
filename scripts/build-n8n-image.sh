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
    rm -rf "$rootfs"
    trap - EXIT
fi

if $base_only; then
    echo "$base"
    exit 0
fi

runtime_launcher=$(.venv/bin/n8n-backup install-n8n "$version" | tail -n 1)
runtime_dir=$(dirname "$(dirname "$runtime_launcher")")
# Tagged by its Dockerfile: a changed Dockerfile makes a new one.
shell_image="n8n-restore-verify/n8n-shell:$(sha256sum docker/Dockerfile | cut -c1-12)"
if ! docker image inspect "$shell_image" >/dev/null 2>&1; then
    build_log=$(mktemp)
    if ! docker build --quiet --build-arg BASE_IMAGE="$base" -f docker/Dockerfile \
            -t "$shell_image" docker >"$build_log" 2>&1; then
        cat "$build_log" >&2
        rm -f "$build_log"
        exit 1
    fi
    rm -f "$build_log"
fi
# One pass over the 2.8 GB runtime: the small image's files (a container export is a tar
# stream; Go's tar ends it with exactly two zero blocks, cut so that the runtime's members
# follow) and node_modules as /opt/n8n/node_modules owned by root, imported as one layer.
# docker build would copy the runtime three times (build context, COPY, commit).
progress "importing $image from $runtime_dir (2.8 GB)"
container=$(docker create "$shell_image" /bin/true)
staging="$image-partial-$$"
cleanup() {
    docker rm -f "$container" >/dev/null 2>&1 || true
    docker rmi "$staging" >/dev/null 2>&1 || true
}
trap cleanup EXIT
{
    docker export "$container" | head -c -1024
    tar -C "$runtime_dir" --owner=0 --group=0 --numeric-owner \
        --transform 's,^node_modules,opt/n8n/node_modules,' -c node_modules
} | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV NODE_ENV=production N8N_RELEASE_TYPE=stable SHELL=/bin/sh' \
    --change 'WORKDIR /home/node' --change 'USER node' --change 'EXPOSE 5678' \
    --change 'ENTRYPOINT ["n8n"]' - "$staging" >/dev/null
# Tagged only once n8n in it says its version: a cut stream must not leave a cached image.
said=$(docker run --rm --network none "$staging" --version 2>&1 | tail -n 1 || true)
if [ "$said" != "$version" ]; then
    echo "build-n8n-image: n8n in the imported image says '$said', not its version $version" >&2
    exit 1
fi
docker tag "$staging" "$image"
echo "$image"
