#!/usr/bin/env bash
# The project's tests: lint, types, unit tests and end-to-end tests on real n8n.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
# Debian's chromium renders the reports in the tests, as a reader sees them.
command -v chromium >/dev/null 2>&1 || {
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
}
# restic (snapshot repositories) and the real servers its tests store into on 127.0.0.1:
# rclone's REST server and OpenSSH's sshd (its service is not started; the tests run their own).
if ! command -v restic >/dev/null 2>&1 || ! command -v rclone >/dev/null 2>&1 \
    || [ ! -x /usr/sbin/sshd ] || ! command -v ssh >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        restic rclone openssh-server openssh-client >/dev/null
fi
# Debian's PostgreSQL 15 (n8n users run it): the tests start a server of their own with it.
if [ ! -x /usr/lib/postgresql/15/bin/postgres ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null
fi
.venv/bin/ruff format --check backup verify tests bench conftest.py
.venv/bin/ruff check backup verify tests bench conftest.py
.venv/bin/mypy backup verify
# Install the n8n runtimes up front (cached per user) so that the tests' own timings stay sane.
# The versions tested: 2.40.7 (default), the last 1.x line, and an earlier 2.x for the minor
# upgrade rehearsal. They install side by side (each waits on the registry much of the time);
# the docker runtime needs an engine and n8n images built locally (no registry is reachable
# here), each built as soon as its runtime is there.
pids=()
for version in 2.40.7 1.123.81 2.39.10; do
    .venv/bin/n8n-backup install-n8n "$version" --quiet &
    pids+=($!)
done
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT  # a failed step leaves no install running
./scripts/docker-engine.sh
./scripts/build-n8n-image.sh --base-only >/dev/null
wait "${pids[0]}"
./scripts/build-n8n-image.sh 2.40.7 >/dev/null
wait "${pids[1]}"
./scripts/build-n8n-image.sh 1.123.81 >/dev/null
./scripts/build-postgres-image.sh >/dev/null
wait "${pids[2]}"
trap - EXIT
exec .venv/bin/pytest tests "$@"
