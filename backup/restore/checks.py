"""What the restored n8n itself says: the workflows it serves and the credentials it decrypts.

The same two checks run after `n8n-backup restore --container` and in `pytest verify`: each
asks the running n8n, compares with the snapshot (exactly: nothing missing, changed or extra)
and returns what it found with the problems."""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any, Protocol

from backup.digests import credential_digest, workflow_digest
from backup.errors import ApiError, InputError, N8nCheckError
from backup.manifest import Manifest
from backup.n8n.api import N8nApi
from backup.n8n.tables import N8nTables
from backup.secret import Secret

EXPORT_TIMEOUT_SECONDS = 180
_WORKFLOW_ID = re.compile(r"\s*[A-Za-z0-9_-]{1,64}\s*")
# What `n8n export:credentials` says, exiting 1, on an instance that has none.
NO_CREDENTIALS = "No credentials found"


class RunsN8nCli(Protocol):
    """Anything that runs n8n CLI commands against the instance's data."""

    def run_cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run ``n8n ARGS``."""
        ...


def usable_api_key(base_url: str, database: N8nTables, key_fingerprint: str) -> str:
    """A public API key from the restored database that the restored instance accepts.

    n8n keeps API keys in its database and checks them with secrets derived from the encryption
    key, so a restore booted with another key refuses all of them.
    """
    keys = database.api_keys()
    if not keys:
        raise N8nCheckError(
            "the snapshot's database holds no public API key, so its workflows cannot be "
            "read over HTTP: create an API key in n8n before taking snapshots"
        )
    for key in keys:
        try:
            with N8nApi(base_url, key) as api:
                api.check_access()
        except (ApiError, InputError):  # refused, or not even shaped like a key
            continue
        return key
    raise N8nCheckError(
        f"the restored n8n refuses every API key stored in the snapshot (tried {len(keys)}): "
        f"it is not running with the source's encryption key (key store entry {key_fingerprint} "
        "is wrong), or every key has expired"
    )


def served_workflow_digests(base_url: str, api_key: str, wanted: list[str]) -> dict[str, str]:
    """Digest of every workflow the instance serves, plus any ``wanted`` id the list omits.
    Each workflow is digested as its page arrives, bodies are not kept, and pinned data is not
    asked for (the digest covers nodes and connections)."""
    served: dict[str, str] = {}
    with N8nApi(base_url, api_key) as api:
        for item in api.iter_workflows(pinned_data=False):
            served[str(item["id"])] = workflow_digest(item.get("nodes"), item.get("connections"))
        for workflow_id in wanted:
            if workflow_id not in served:
                try:
                    body = api.workflow(workflow_id)
                except ApiError:
                    continue
                served[workflow_id] = workflow_digest(body.get("nodes"), body.get("connections"))
    return served


def active_before_start(instance: RunsN8nCli) -> list[str]:
    """Ids of the workflows n8n itself would activate, asked through its CLI before it starts.

    Any n8n CLI command initialises the database and runs pending migrations without starting
    a trigger, so this also shows what the target version's migrations activated.
    """
    result = instance.run_cli("list:workflow", "--active=true", "--onlyId", timeout=300)
    if result.returncode != 0:
        said = _last_error_line(result.stderr + "\n" + result.stdout)
        raise N8nCheckError(f"n8n could not read the restored data before start: {said}")
    return [line.strip() for line in result.stdout.splitlines() if _WORKFLOW_ID.fullmatch(line)]


def active_workflows_served(base_url: str, api_key: str) -> list[str]:
    """'id (name)' of every workflow the instance's public API reports as active (asked for the
    active ones only, and each answer's own flag checked too)."""
    with N8nApi(base_url, api_key) as api:
        return [
            f"{item['id']} ({item.get('name')!r})"
            for item in api.iter_workflows(active=True, pinned_data=False)
            if item.get("active")
        ]


def inert_problems(base_url: str, database: N8nTables, manifest: Manifest) -> list[str]:
    """What shows that the restored n8n is not inert: a registered webhook, a workflow active in
    its tables or in n8n's own view, an execution the snapshot did not have. Empty when inert."""
    problems = []
    if database.has_table("webhook_entity") and (webhooks := database.count("webhook_entity")):
        problems.append(f"n8n registered {webhooks} webhook(s)")
    if active := database.active_workflow_ids():
        problems.append(f"{len(active)} workflow(s) are active in the database: {active[:10]}")
    api_key = usable_api_key(base_url, database, manifest.key_fingerprint)
    if served := active_workflows_served(base_url, api_key):
        problems.append(f"n8n reports {len(served)} active workflow(s): {served[:10]}")
    started = database.count("execution_entity") - manifest.counts.executions
    if started:
        problems.append(f"{started} execution(s) started")
    return problems


def n8n_credential_digests(
    instance: RunsN8nCli, encryption_key: Secret, fingerprint: str
) -> dict[str, str]:
    """Ask n8n's own code to decrypt every credential; return keyed digests by credential id.

    The decrypted values only ever exist in this function's memory.
    """
    result = instance.run_cli(
        "export:credentials", "--all", "--decrypted", timeout=EXPORT_TIMEOUT_SECONDS
    )
    output = result.stdout
    if result.returncode != 0 and NO_CREDENTIALS in output + result.stderr:
        return {}  # an instance without credentials is valid; the counts say if it should be
    exported = _parse_export(output)
    if result.returncode != 0 or exported is None:
        said = _last_error_line(result.stderr + "\n" + ("" if exported else output))
        if "decrypt" in said.lower():
            raise N8nCheckError(
                f"n8n cannot decrypt the restored credentials with encryption key {fingerprint}: "
                f"the key store holds the wrong key for this snapshot (n8n said: {said})"
            )
        raise N8nCheckError(f"n8n export:credentials failed ({result.returncode}): {said}")
    return {
        str(item["id"]): credential_digest(item.get("data") or {}, encryption_key.reveal())
        for item in exported
    }


def workflows_served(
    base_url: str, database: N8nTables, manifest: Manifest, expected: dict[str, str] | None = None
) -> tuple[int, list[str]]:
    """How many workflows the running n8n serves, and the problems: a workflow of the snapshot
    missing or changed (against ``expected`` digests after an upgrade), or one it does not have."""
    api_key = usable_api_key(base_url, database, manifest.key_fingerprint)
    served = served_workflow_digests(base_url, api_key, [w.id for w in manifest.workflows])
    problems = workflow_mismatches(manifest, served, expected)
    extra = sorted(set(served) - {w.id for w in manifest.workflows})
    if extra:
        problems.append(f"n8n serves workflows the snapshot does not have: {extra[:5]}")
    return len(served), problems


def credentials_decrypted(
    instance: RunsN8nCli, key: Secret, manifest: Manifest
) -> tuple[int, list[str]]:
    """How many credentials n8n's own code decrypts, and the problems: one of the snapshot
    missing or decrypting to other data, or one the snapshot does not have."""
    return credential_findings(
        manifest, n8n_credential_digests(instance, key, manifest.key_fingerprint)
    )


def credential_findings(manifest: Manifest, digests: dict[str, str]) -> tuple[int, list[str]]:
    """How many credentials n8n decrypted (``digests``, from :func:`n8n_credential_digests`),
    and the problems against the manifest."""
    problems = credential_mismatches(manifest, digests)
    extra = sorted(set(digests) - {c.id for c in manifest.credentials})
    if extra:
        problems.append(f"n8n has credentials the snapshot does not have: {extra[:5]}")
    return len(digests), problems


def workflow_mismatches(
    manifest: Manifest, served: dict[str, str], expected: dict[str, str] | None = None
) -> list[str]:
    """Workflows of the manifest that n8n does not serve, or serves changed. ``expected`` holds
    the digests to compare with after an upgrade (the migrated rows); else the manifest's."""
    problems = []
    for workflow in manifest.workflows:
        wanted = workflow.digest if expected is None else expected.get(workflow.id)
        label = f"workflow {workflow.id} ({workflow.name!r})"
        if workflow.id not in served:
            problems.append(f"{label} is not served")
        elif wanted is None:
            problems.append(f"{label} is missing from the migrated database")
        elif served[workflow.id] != wanted:
            against = "its database row" if expected is not None else "the snapshot"
            problems.append(f"{label} has different nodes or connections than {against}")
    return problems


def credential_mismatches(manifest: Manifest, n8n_digests: dict[str, str]) -> list[str]:
    """Credentials whose digest in n8n differs from the manifest, or that n8n lacks."""
    problems = []
    for entry in manifest.credentials:
        digest = n8n_digests.get(entry.id)
        if digest is None:
            problems.append(f"credential {entry.id} ({entry.name!r}) is missing in n8n")
        elif digest != entry.digest:
            problems.append(f"credential {entry.id} ({entry.name!r}) decrypts to different data")
    return problems


def _parse_export(output: str) -> list[dict[str, Any]] | None:
    # n8n may print log lines before the JSON array; the array is the last thing printed.
    start = output.find("[")
    while start != -1:
        try:
            value = json.loads(output[start:])
        except ValueError:
            start = output.find("\n[", start + 1)
            start = start + 1 if start != -1 else -1
            continue
        return value if isinstance(value, list) else None
    return None


def _last_error_line(text: str) -> str:
    # Only n8n's own messages are quoted: never anything that could be decrypted output.
    lines = [line.strip() for line in text.splitlines() if line.strip() and "{" not in line]
    return lines[-1][:300] if lines else "(no message)"
