#!/usr/bin/env bash
# The daily routine: snapshot, verify in a fresh n8n, prune. Quiet when all is well (cron mails
# only output), and on failure prints what failed plus the verify log, then exits non-zero with
# the codes of the README's table: a failed snapshot or prune passes n8n-backup's own code
# through (1 failure, 2 bad input, 3 executions running, 12 key problem); 20 is a failed
# verification. The last line on stderr says which step failed.
#
# Settings (environment; see the README for each option):
#   N8N_FOLDER or N8N_CONTAINER   where n8n's data is (folder, or Docker container name)
#   N8N_API_URL                   n8n's address (optional with N8N_CONTAINER)
#   N8N_API_KEY_FILE              file holding a public API key
#   BACKUP_ROOT, KEY_STORE        where snapshots and keys go (keep them on different disks)
#   VERIFY_ARGS                   extra pytest verify options, e.g. "--runtime docker"
#   PRUNE_ARGS                    e.g. "--keep-daily 30 --keep-weekly 13"
#   N8N_BACKUP_NOTIFY             alerts from every step: "ping+https://hc-ping.com/<uuid>",
#                                 webhooks (failures only), slack+https://... (space-separated)
#   N8N_BACKUP_METRICS_FILE       Prometheus textfile, rewritten by every step
#   N8N_BACKUP_REPO               optional restic repository: the snapshot is stored there (the
#                                 local copy goes), verified from there, pruned there; its
#                                 password in RESTIC_PASSWORD_FILE or N8N_BACKUP_REPO_PASSWORD_FILE
set -uo pipefail
# The folder snapshot prints is read below: a quiet setting for cron must not hide it.
unset N8N_BACKUP_QUIET
here="$(cd "$(dirname "$0")/.." && pwd)"
backup="$here/.venv/bin/n8n-backup"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT

source_args=()
if [ -n "${N8N_CONTAINER:-}" ]; then
    source_args=(--container "$N8N_CONTAINER")
else
    source_args=(--n8n-folder "${N8N_FOLDER:?set N8N_FOLDER or N8N_CONTAINER}")
fi
[ -n "${N8N_API_URL:-}" ] && source_args+=(--api-url "$N8N_API_URL")

# The snapshot verified is the one just taken: the last line snapshot prints, never the
# last folder by name (an operator's hand-made folder may sort after it).
taken="$("$backup" snapshot "${source_args[@]}" --api-key-file "${N8N_API_KEY_FILE:?}" \
    --snapshots "${BACKUP_ROOT:?}" --key-store "${KEY_STORE:?}" 2>"$log")"
rc=$?
if [ "$rc" -ne 0 ]; then
    cat "$log" >&2
    echo "nightly: snapshot of n8n failed (see the error above)" >&2
    exit "$rc"
fi
newest="${taken##*$'\n'}"
if [ -n "${N8N_BACKUP_REPO:-}" ]; then
    # snapshot printed "REPOSITORY RESTIC-ID": verify that one, from the repository.
    which=(--repo-snapshots "${newest##* }")
elif [ -d "$newest" ]; then
    which=(--snapshots "$newest")
else
    echo "nightly: snapshot printed no snapshot folder (got '$newest')" >&2
    exit 1
fi
# shellcheck disable=SC2086  # VERIFY_ARGS is a list of options on purpose
if ! (cd "$here" && .venv/bin/pytest verify "${which[@]}" --key-store "$KEY_STORE" \
        -q ${VERIFY_ARGS:-}) >"$log" 2>&1; then
    echo "nightly: verification of $newest FAILED; report and log follow" >&2
    cat "$log" >&2
    exit 20
fi
# shellcheck disable=SC2086
"$backup" prune --snapshots "$BACKUP_ROOT" ${PRUNE_ARGS:-} --quiet
rc=$?
if [ "$rc" -ne 0 ]; then
    echo "nightly: prune failed (see the error above)" >&2
    exit "$rc"
fi
