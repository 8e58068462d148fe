"""n8n-verify-merge on shard results as a CI job's merge step receives them: copied from
each runner's artifacts into folders of their own, and untrusted like any other input."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from verify.merge import main as verify_merge
from verify.result import SCHEMA, SCHEMA_VERSION


def _shard(folder: Path, name: str, snapshot: str, result: str, **body: Any) -> Path:
    """One shard's JSON result and JUnit file in ``folder``; the JUnit path it records is the
    runner's, which the merge's machine does not have."""
    folder.mkdir(parents=True)
    (folder / f"{name}.xml").write_text(
        f'<testsuites><testsuite name="pytest"><testcase name="test_boot[{snapshot}]"/>'
        "</testsuite></testsuites>"
    )
    entry = {"snapshot_folder": f"/runner/snapshots/{snapshot}", "snapshot_id": snapshot}
    shard = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "verified_at": "2026-11-28T00:00:00Z",
        "junit": f"/home/runner/work/reports/{name}.xml",
        "entries": [{**entry, "target_version": "2.40.7", "result": result, "causes": []}],
        **body,
    }
    path = folder / f"{name}.json"
    path.write_text(json.dumps(shard))
    return path


def test_shards_copied_from_their_runners_merge(tmp_path: Path) -> None:
    one = _shard(tmp_path / "shard-1", "verify-20261128T000000Z", "a", "PASSED")
    two = _shard(tmp_path / "shard-2", "verify-20261128T000000Z", "b", "PASSED")
    assert verify_merge(["--out", str(tmp_path / "merged"), str(one), str(two)]) == 0
    (merged,) = (tmp_path / "merged").glob("verify-merged-*.json")
    cases = [case.get("name") for case in ET.parse(merged.with_suffix(".xml")).iter("testcase")]
    assert cases == ["test_boot[a]", "test_boot[b]"]


GARBLED = "<testsuites><testsuite>"


@pytest.mark.parametrize(
    ("change", "junit", "said"),
    [
        ({"entries": [1]}, None, "its entries or JUnit file are garbled"),
        ({"entries": ["x"]}, None, "its entries or JUnit file are garbled"),
        ({"junit": ["a.xml"]}, None, "its entries or JUnit file are garbled"),
        ({"junit": "/elsewhere/missing.xml"}, None, "names the JUnit file missing.xml, which is"),
        ({}, GARBLED, "is not a readable JUnit file"),
    ],
)
def test_a_garbled_or_incomplete_shard_is_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    change: dict[str, Any],
    junit: str | None,
    said: str,
) -> None:
    good = _shard(tmp_path / "shard-1", "verify-1", "a", "PASSED")
    bad = _shard(tmp_path / "shard-2", "verify-2", "b", "PASSED", **change)
    if junit is not None:
        bad.with_suffix(".xml").write_text(junit)
    assert verify_merge(["--out", str(tmp_path / "merged"), str(good), str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and said in err, err
    assert not list((tmp_path / "merged").glob("verify-merged-*"))
