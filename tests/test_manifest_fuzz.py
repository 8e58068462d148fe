"""Generated manifests against the loader, the MAC and the offline checks (hypothesis).

From a sound snapshot, one field at a time is replaced by a generated value (wrong types,
hostile paths and identifiers, odd sizes). Whatever the value: no exception but SnapshotError,
an unsigned change never authenticates, and a signed change to what the offline checks cover
never passes them.
"""

from __future__ import annotations

import contextlib
import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from backup.check import count_problems, file_problems
from backup.digests import manifest_mac, sha256_file, workflow_digest
from backup.errors import SnapshotError
from backup.manifest import MANIFEST_NAME, FileEntry, Manifest, authenticate
from backup.n8n.sqlite import N8nDatabase
from tests.test_manifest_and_check import KEY, build_snapshot

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)
hostile_texts = st.sampled_from(
    [
        "../database.sqlite",
        "/etc/passwd",
        "workflows/../../x.json",
        "workflows/../database.sqlite",
        "a//b",
        ".",
        "",
        "database.sqlite\x00",
        "C:\\x",
        "workflows/x.json\n",
        'x"; DROP TABLE workflow_entity; --',
        "public; CREATE ROLE evil SUPERUSER",
        "2026-13-45T99:00:00",
        "2026-01-01T00:00:00",
        "yesterday",
        "\x1b]0;pwned\x07",
        "0" * 64,
        "sha256:" + "0" * 64,
    ]
)
values = st.one_of(json_values, hostile_texts, st.integers(min_value=-(2**70), max_value=2**70))
# Fields whose change the offline checks (files, counts, exports) must catch once signed.
CHECKED = [
    ("files", 0, "path"),
    ("files", 0, "size"),
    ("files", 0, "sha256"),
    ("files", 1, "path"),
    ("files", 1, "sha256"),
    ("database_file",),
    ("database_kind",),
    ("workflows", 0, "export_file"),
    ("workflows", 0, "digest"),
    ("workflows", 1, "id"),
    ("counts", "workflows"),
    ("counts", "credentials"),
    ("counts", "executions"),
]
# Fields only the MAC protects (their change is caught by authentication alone).
OTHERS = [
    ("snapshot_id",),
    ("created",),
    ("source_n8n_version",),
    ("key_fingerprint",),
    ("table_prefix",),
    ("database_schema",),
    ("forced_with_running_executions",),
    ("credentials", 0, "digest"),
    ("workflows", 0, "name"),
    ("workflows", 0, "active"),
    ("format_version",),
]


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A sound snapshot with a database copy and one workflow export, and its manifest."""
    folder = tmp_path_factory.mktemp("fuzz") / "snap"
    manifest = build_snapshot(folder)
    database = N8nDatabase(folder / "database.sqlite")
    row = database.workflows()[0]
    export = folder / "workflows" / f"{row.id}-export.json"
    export.parent.mkdir()
    export.write_text(
        json.dumps({"id": row.id, "nodes": row.nodes, "connections": row.connections})
    )
    relative = export.relative_to(folder).as_posix()
    entries = [*manifest.files, FileEntry(relative, sha256_file(export), export.stat().st_size)]
    workflows = [
        w if w.id != row.id else type(w)(w.id, w.name, w.active, w.digest, relative)
        for w in manifest.workflows
    ]
    assert workflows[0].digest == workflow_digest(row.nodes, row.connections)
    sound = type(manifest)(**{**manifest.__dict__, "files": entries, "workflows": workflows})
    (folder / MANIFEST_NAME).write_text(sound.to_json(KEY))
    assert file_problems(folder, sound) == [] and count_problems(sound, database) == []
    raw: dict[str, Any] = json.loads((folder / MANIFEST_NAME).read_text())
    return folder, raw


def mutated(raw: dict[str, Any], field: tuple[Any, ...], value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(raw)
    holder: Any = changed
    for step in field[:-1]:
        holder = holder[step]
    holder[field[-1]] = value
    return changed


def signed(raw: dict[str, Any]) -> dict[str, Any]:
    body = {name: value for name, value in raw.items() if name != "mac"}
    return {**body, "mac": manifest_mac(body, KEY)}


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(field=st.sampled_from(CHECKED + OTHERS), value=values)
def test_a_changed_field_never_authenticates_without_the_key(
    snapshot: tuple[Path, dict[str, Any]], field: tuple[Any, ...], value: Any
) -> None:
    folder, raw = snapshot
    changed = mutated(raw, field, value)
    assume(changed != raw)
    copy_folder = folder.parent / "unsigned"
    copy_folder.mkdir(exist_ok=True)
    (copy_folder / MANIFEST_NAME).write_text(json.dumps(changed))
    with pytest.raises(SnapshotError):
        authenticate(copy_folder, KEY)


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(field=st.sampled_from(CHECKED), value=values)
def test_a_signed_change_never_passes_the_offline_checks(
    snapshot: tuple[Path, dict[str, Any]], field: tuple[Any, ...], value: Any
) -> None:
    folder, raw = snapshot
    changed = signed(mutated(raw, field, value))
    assume(changed != raw)
    try:
        manifest = Manifest.from_dict(changed)
    except SnapshotError:
        return
    problems = file_problems(folder, manifest)
    if not problems:
        problems = count_problems(manifest, N8nDatabase(folder / manifest.database_file))
    assert problems, f"{field} = {value!r} passed the checks"


@settings(max_examples=300, deadline=None)
@given(raw=st.dictionaries(st.sampled_from(["format", "format_version", "files", "x"]), values))
def test_any_json_object_loads_or_is_a_snapshot_error(raw: dict[str, Any]) -> None:
    with contextlib.suppress(SnapshotError):
        Manifest.from_dict(raw)
