#!/usr/bin/env bash
# Prepare a checkout on a fresh machine: Node.js/npm (for n8n runtimes) and the .venv.
# Idempotent: a second run only checks. Sourced by demo.sh and test.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

need_apt=()
command -v npm >/dev/null 2>&1 || need_apt+=(nodejs npm)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
python3 -c "import venv, ensurepip" >/dev/null 2>&1 || need_apt+=(python3-venv)
if ((${#need_apt[@]})); then
    echo "setup: installing ${need_apt[*]} with apt-get" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
# Reinstall only when pyproject.toml changed since the last install.
stamp=.venv/.installed-pyproject
if ! cmp -s pyproject.toml "$stamp"; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[dev]'
    cp pyproject.toml "$stamp"
fi
