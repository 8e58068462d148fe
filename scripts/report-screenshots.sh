#!/usr/bin/env bash
# The README's pictures of a report, as a real browser (Debian's chromium) renders them: the
# demo's passing run, and the same snapshot verified with a key store holding a wrong key.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v chromium >/dev/null || { echo "report-screenshots: install Debian's chromium" >&2; exit 1; }
./scripts/demo.sh >/dev/null
passing=$(ls -t reports/verify-*.html | head -1)
snapshot=$(ls -d .demo/snapshots/*/ | tail -1)
fingerprint=$(.venv/bin/python -c "import json,sys; print(json.load(open(sys.argv[1]))['key_fingerprint'])" "$snapshot/manifest.json")
wrong=$(mktemp -d)
trap 'rm -rf "$wrong"' EXIT
echo "not-the-key-of-this-snapshot" > "$wrong/$fingerprint.key"
chmod 600 "$wrong/$fingerprint.key"
.venv/bin/pytest verify --snapshots "$snapshot" --key-store "$wrong" --runtime process \
    --html "$wrong/failing.html" --junitxml "$wrong/failing.xml" -q >/dev/null || true
shoot() {
    chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1600,1000 \
        --screenshot="$2" "file://$(realpath "$1")" 2>/dev/null
}
shoot "$passing" docs/report-passing.png
shoot "$wrong/failing.html" docs/report-failing.png
echo "docs/report-passing.png docs/report-failing.png"
