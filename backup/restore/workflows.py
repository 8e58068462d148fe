"""Workflows-only restore through the public API, into any n8n (no database is touched).

Each exported workflow is created with its name, nodes, connections, settings and tags. A
workflow whose name already exists on the target is left alone unless ``overwrite``. Credentials
are not in the export (they live encrypted in the database), so the restore lists which ones each
workflow references: they must be re-created by hand on the target.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backup.check import trusted_snapshot
from backup.errors import ApiError, SnapshotError
from backup.keystore import KeyStore
from backup.manifest import Manifest
from backup.n8n.api import N8nApi, writable_workflow
from backup.secret import Secret


@dataclass
class WorkflowRestoreResult:
    """What happened to each workflow, and the credentials to re-create."""

    created: list[str] = field(default_factory=list)
    overwritten: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    credentials_needed: dict[str, list[str]] = field(default_factory=dict)


def referenced_credentials(workflow: dict[str, Any]) -> list[str]:
    """'name (type)' of every credential the workflow's nodes use."""
    found = []
    for node in workflow.get("nodes") or []:
        for type_, ref in (node.get("credentials") or {}).items():
            name = ref.get("name") if isinstance(ref, dict) else None
            found.append(f"{name or '?'} ({type_})")
    return found


def _existing_by_name(api: N8nApi) -> dict[str, str]:
    return {
        str(item.get("name")): str(item["id"]) for item in api.iter_workflows(pinned_data=False)
    }


def restore_workflows(
    snapshot_dir: Path,
    api: N8nApi,
    key_store: KeyStore,
    *,
    overwrite: bool = False,
    say: Callable[[str], None] = lambda message: None,
) -> WorkflowRestoreResult:
    """Create (or with ``overwrite`` replace) every exported workflow of the snapshot, once the
    snapshot is proven authentic (its key from ``key_store``) and whole."""
    claimed = Manifest.load(snapshot_dir)
    manifest = trusted_snapshot(snapshot_dir, Secret(key_store.load(claimed.key_fingerprint)))
    api.check_access()
    # Names on the target before this run: same-named workflows inside the snapshot are all
    # created, and only what the target already had is protected.
    existing = _existing_by_name(api)
    tags = api.tags()
    result = WorkflowRestoreResult()
    for entry in manifest.workflows:
        if entry.export_file is None:
            result.failed.append(
                (entry.name, "not exported by the API when the snapshot was taken")
            )
            continue
        try:
            exported = json.loads((snapshot_dir / entry.export_file).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SnapshotError(f"cannot read {entry.export_file}: {exc}") from None
        body = writable_workflow(exported)
        for credential in referenced_credentials(exported):
            result.credentials_needed.setdefault(credential, []).append(entry.name)
        try:
            if entry.name in existing and not overwrite:
                result.skipped.append(entry.name)
                continue
            if entry.name in existing:
                workflow_id = existing[entry.name]
                api.update_workflow(workflow_id, body)
                result.overwritten.append(entry.name)
            else:
                workflow_id = str(api.create_workflow(body)["id"])
                result.created.append(entry.name)
            tag_names = [
                str(tag["name"])
                for tag in exported.get("tags") or []
                if isinstance(tag, dict) and "name" in tag
            ]
            if tag_names:
                for name in tag_names:
                    if name not in tags:
                        tags[name] = api.create_tag(name)
                api.set_workflow_tags(workflow_id, [tags[name] for name in tag_names])
        except ApiError as exc:
            result.failed.append((entry.name, str(exc)))
        say(f"{len(result.created) + len(result.overwritten)} restored, {len(result.skipped)} kept")
    return result
