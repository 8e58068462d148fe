"""The checks every snapshot gets, in the order an operator would run them by hand, except that
the checks of what n8n serves that take long to read come after the quicker ones. For a SQLite
snapshot n8n already boots while the snapshot's own copy is checked (files, counts, key).

Assertion messages name workflows and credentials by id and name only: never a secret value.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from backup.check import count_problems, credential_problems, database_problems, file_problems
from backup.errors import N8nCheckError
from backup.manifest import Manifest
from backup.n8n.binary_data import sample as binary_sample
from backup.n8n.node_types import LoadedTypes
from backup.n8n.session import EditorSession
from backup.n8n.tables import N8nTables
from backup.restore.checks import credential_findings, inert_problems
from backup.restore.credential_tests import FAILED, OUTCOMES, PASSED, run_credential_test
from backup.restore.entity_checks import (
    StoredEntities,
    served_entity_problems,
    stored_entity_problems,
)
from verify.cases import SnapshotCase, StoredKey
from verify.fixtures import Authentication, CopiedWorkflows, CredentialSecrets, RestoredInstance
from verify.report import SnapshotSummary

MAX_LISTED = 10


@contextmanager
def failing_plainly() -> Iterator[None]:
    """Report what n8n said as the failure message, without a traceback of our helpers."""
    try:
        yield
    except N8nCheckError as exc:
        message = str(exc)
    else:
        return
    pytest.fail(message, pytrace=False)  # outside the except: no "during handling" chain


def _listing(problems: list[str]) -> str:
    shown = problems[:MAX_LISTED]
    more = len(problems) - len(shown)
    return "; ".join(shown) + (f"; and {more} more" if more > 0 else "")


def test_manifest_authentic(authentication: Authentication) -> None:
    """The manifest's MAC holds under the key store's key: nobody without the key changed it.

    Every other check relies on the manifest, so each of them fails too when this one does.
    """
    if authentication.problem:
        pytest.fail(f"manifest: {authentication.problem}", pytrace=False)


@pytest.mark.usefixtures("copy_checked_while_booting")
def test_files(case: SnapshotCase, manifest: Manifest, database_file_check: list[str]) -> None:
    """Every file in the manifest is there with its sha256 and size; the database is sound."""
    problems = file_problems(case.folder, manifest, database_file_check)
    if not problems:
        problems = database_problems(case.folder, manifest)
    assert not problems, f"snapshot files: {_listing(problems)}"


@pytest.mark.usefixtures("copy_checked_while_booting")
def test_counts(
    manifest: Manifest, snapshot_database: N8nTables, copied_workflows: CopiedWorkflows
) -> None:
    """The manifest's counts agree with its lists and with the database copy."""
    problems = count_problems(manifest, snapshot_database, copied_workflows.digests)
    assert not problems, f"counts: {_listing(problems)}"


@pytest.mark.usefixtures("copy_checked_while_booting")
def test_key(manifest: Manifest, stored_key: StoredKey, snapshot_database: N8nTables) -> None:
    """The key store has the snapshot's key, and every credential decrypts with it in Python."""
    assert stored_key.value is not None, "the key store has no key for this snapshot"
    problems = credential_problems(manifest, snapshot_database, stored_key.value)
    assert not problems, f"credentials (independent decryption): {_listing(problems)}"


def test_boot(restored: RestoredInstance) -> None:
    """n8n of the target version started on the restored copy, migrations included."""
    assert restored.instance.is_running(), "n8n stopped after it became ready"
    before = restored.migrations_before
    after = restored.database.migrations()
    assert after[: len(before)] == before, "n8n's migration history changed order on restore"


def _entity_counts(manifest: Manifest, stored: StoredEntities) -> str:
    """ "tags 2/2, workflow versions 147/149 (+2 by the upgrade), ..." for the report."""
    said = []
    for name, entry in sorted(manifest.entities.items()):
        added = stored.added_by_upgrade.get(name)
        said.append(
            f"{name} {entry.count}/{stored.found.get(name, 0)}"
            + (f" (+{added} by the upgrade)" if added else "")
        )
    return ", ".join(said) or "not recorded in this snapshot"


def test_other_entities(
    restored: RestoredInstance,
    editor: EditorSession,
    manifest: Manifest,
    stored_key: StoredKey,
    summary: SnapshotSummary,
) -> None:
    """Tags, folders, projects and sharing, variables, data tables and their rows, workflow
    versions, users and roles, executions: the restored database holds exactly what the
    manifest counts and digests, and n8n's API lists them."""
    assert stored_key.value is not None
    with restored.database.one_view():  # on a remote engine: one copy for all these reads
        stored = stored_entity_problems(
            manifest,
            restored.database,
            stored_key.value,
            upgraded=restored.version != manifest.source_n8n_version,
        )
        problems = list(stored.problems)
        with failing_plainly():
            problems += served_entity_problems(manifest, restored.database, editor)
    summary.entities = _entity_counts(manifest, stored)
    assert not problems, f"entities: {_listing(problems)}"


def test_binary_data(editor: EditorSession, manifest: Manifest, summary: SnapshotSummary) -> None:
    """Every execution binary file the copied executions refer to was in the snapshot, and the
    restored n8n serves a sample of them, byte for byte, as its editor downloads them."""
    binary = manifest.binary_data
    if binary is None:
        summary.binary_data = "none referenced"
        return
    total = sum(item.size for item in binary.files)
    summary.binary_data = f"{len(binary.files)} files, {total / 1e6:.1f} MB"
    assert binary.missing_count == 0, (
        f"{binary.missing_count} binary file(s) the executions refer to were not found when the "
        f"snapshot was taken: {_listing(binary.missing)}"
    )
    problems = []
    for item in binary_sample(binary.files):
        with failing_plainly():
            body = editor.request(
                "GET", "/rest/binary-data", params={"id": item.n8n_id, "action": "download"}
            ).content
        if hashlib.sha256(body).hexdigest() != item.sha256:
            problems.append(f"{item.path}: n8n serves {len(body)} bytes that differ")
    summary.binary_data += f"; {len(binary_sample(binary.files))} served and compared"
    assert not problems, f"binary data: {_listing(problems)}"


# The node types n8n loaded and the workflows it serves are read in the background from n8n's
# readiness on (RestoredInstance): they are asked after the entity and binary data checks, which
# run meanwhile (5,000 workflows: about 3 s of reading each).
def test_node_types_load(
    restored: RestoredInstance,
    loaded_types: LoadedTypes,
    copied_workflows: CopiedWorkflows,
    manifest: Manifest,
    summary: SnapshotSummary,
) -> None:
    """Every node type, at the type version each workflow uses, is loaded by the restored n8n:
    asked as its editor asks, so a workflow would not open with unknown ("?") nodes.

    Built-in nodes the source's own n8n major lacks too are listed, not failed; across a major
    upgrade they are what the upgrade breaks, and fail.
    """
    use = restored.migrated_node_types or copied_workflows.node_types
    same_major = restored.version.split(".")[0] == manifest.source_n8n_version.split(".")[0]
    found = use.findings(loaded_types, same_major=same_major)
    summary.node_types = f"{len(use.names)} used, {len(found.failures)} missing"
    summary.node_types_missing = found.failures
    summary.node_type_notes = found.notes
    assert not found.failures, f"node types: {_listing(found.failures)}"


def test_community_nodes_load(
    restored: RestoredInstance,
    loaded_types: LoadedTypes,
    manifest: Manifest,
    summary: SnapshotSummary,
) -> None:
    """Every community package the source had installed is back, and the restored n8n loaded
    each of its node types; custom node folders were restored before the boot."""
    loaded = loaded_types.versions
    problems = [
        f"{package.name} {package.version}: node type {node_type} not loaded"
        for package in manifest.community_packages
        for node_type in package.node_types
        if node_type not in loaded
    ]
    installed = {package.name for package in restored.database.community_packages()}
    problems += [
        f"{package.name} is not recorded as installed in the restored database"
        for package in manifest.community_packages
        if package.name not in installed
    ]
    packages = ", ".join(f"{p.name} {p.version}" for p in manifest.community_packages) or "none"
    summary.extensions = (
        f"packages: {packages}; folders: {', '.join(restored.folder.node_folders) or 'none'}"
    )
    assert not problems, f"community nodes: {_listing(problems)}"


def test_workflows_load(
    restored: RestoredInstance, manifest: Manifest, summary: SnapshotSummary
) -> None:
    """The restored n8n serves every workflow of the manifest, unchanged."""
    with failing_plainly():
        served, problems = restored.served_workflows.result()
    summary.found_workflows = served
    assert not problems, f"workflows: {_listing(problems)}"
    assert served == manifest.counts.workflows, (
        f"n8n serves {served} workflows, the manifest counts {manifest.counts.workflows}"
    )


def test_credentials_decrypt_in_n8n(
    restored: RestoredInstance, manifest: Manifest, summary: SnapshotSummary
) -> None:
    """n8n's own code decrypts every credential to the data that was backed up."""
    with failing_plainly():  # n8n's export was started with the server
        decrypted, problems = credential_findings(manifest, restored.credential_digests.result())
    summary.found_credentials = decrypted
    assert not problems, f"credentials in n8n: {_listing(problems)}"
    assert decrypted == manifest.counts.credentials, (
        f"n8n decrypts {decrypted} credentials, the manifest counts {manifest.counts.credentials}"
    )


def test_credentials_connect(
    case: SnapshotCase,
    editor: EditorSession,
    manifest: Manifest,
    summary: SnapshotSummary,
    request: pytest.FixtureRequest,
) -> None:
    """Opt-in (--test-credentials): n8n's own test of each credential, as the editor's Test
    button runs it, passes; types without a test are listed as such."""
    assert case.test_credentials, "collected only with --test-credentials"
    hidden: CredentialSecrets = request.getfixturevalue("credential_secrets")
    with failing_plainly():
        results = [
            run_credential_test(editor, entry, hidden.hidden.get(entry.id, []))
            for entry in manifest.credentials
        ]
    by_outcome = {outcome: [r for r in results if r.outcome == outcome] for outcome in OUTCOMES}
    summary.credential_tests = "; ".join(
        f"{outcome} {len(listed)}"
        + (": " + ", ".join(f"{r.name} ({r.message})" for r in listed[:10]) if listed else "")
        for outcome, listed in by_outcome.items()
        if outcome != PASSED or listed
    )
    failed = by_outcome[FAILED]
    assert not failed, "credential tests: " + _listing(
        [f"{r.id} ({r.name!r}, {r.type}): {r.message}" for r in failed]
    )


def test_nothing_fires(restored: RestoredInstance, case: SnapshotCase, manifest: Manifest) -> None:
    """No workflow is active and no execution starts on the restored instance: checked as soon
    as n8n was ready, and again at the end of the quiet window, which counts from n8n's start
    and overlaps the other checks.

    Workflows that were active in the snapshot are listed in the report's summary.
    """
    remaining = restored.started_at + case.quiet_seconds - time.monotonic()
    if remaining > 0:
        time.sleep(remaining)
    with failing_plainly():  # in n8n's own view as well as in its tables
        at_end = inert_problems(restored.instance.base_url, restored.database, manifest)
    problems = [f"when n8n was ready: {problem}" for problem in restored.not_inert_at_readiness]
    problems += [f"after the quiet window: {problem}" for problem in at_end]
    assert not problems, f"the restored instance is not inert: {'; '.join(problems)}"
