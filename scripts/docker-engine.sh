#!/usr/bin/env bash
# Make sure a Docker engine answers: install Debian's docker.io and start dockerd if needed.
set -euo pipefail
if docker info >/dev/null 2>&1; then
    exit 0
fi
if ! command -v dockerd >/dev/null 2>&1; then
    echo "docker-engine: installing docker.io with apt-get" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
fi
echo "docker-engine: starting dockerd" >&2
nohup dockerd >/var/log/n8n-restore-verify-dockerd.log 2>&1 &
for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && exit 0
    sleep 1
done
echo "docker-engine: dockerd did not answer within 60 s (see /var/log/n8n-restore-verify-dockerd.log)" >&2
exit 1
