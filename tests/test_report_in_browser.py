"""The report as a reader sees it in a real browser: the verdict and the first cause in the
summary row, each cause said once, no secret anywhere; screenshots for the README."""

from __future__ import annotations

from pathlib import Path

import pytest

from backup.manifest import Manifest
from tests.browser import rendered_dom, screenshot, summary_results, visible_text
from tests.docker_support import PROCESS_ARGS
from tests.n8n_support import SourceInstance, TakenSnapshot, copy_variant, flip_middle_byte
from tests.verify_runner import run_verify, wrong_key_store

TRACEBACK_MARKERS = ("Traceback (most recent call last)", "During handling of the above")


def test_a_failing_report_says_why_first_and_once(
    pytester: pytest.Pytester, taken: TakenSnapshot, source: SourceInstance, tmp_path: Path
) -> None:
    root = tmp_path / "failing"
    root.mkdir()
    flipped = copy_variant(taken, root, "flipped-byte") / "database.sqlite"
    flip_middle_byte(flipped)
    run = run_verify(pytester, root, taken.key_store, *PROCESS_ARGS, "--quiet-seconds", "1")
    dom = rendered_dom(run.report)
    (result,) = summary_results(dom)
    assert result.startswith(
        "FAILED: test_files: snapshot files: database.sqlite does not match its sha256"
    ), result
    assert "more failed checks" in result
    text = visible_text(dom)
    # The damaged database's consequence is said once; the checks that depend on it point there.
    assert text.count("not read, the database copy is damaged") == 1
    assert "not run: counts failed (see test_counts)" in text
    assert not any(marker in text for marker in TRACEBACK_MARKERS)
    for secret in [*source.seeded_secrets, source.encryption_key, source.api_key]:
        assert secret not in dom, "a secret reached the rendered report"
    assert "What each check proves" in text and "test_nothing_fires" in text
    assert "key values are never shown" in text and "n8n-restore-verify" in text


def test_a_wrong_key_is_the_first_thing_a_reader_sees(
    pytester: pytest.Pytester, taken: TakenSnapshot, tmp_path: Path
) -> None:
    fingerprint = Manifest.load(taken.path).key_fingerprint
    keys = wrong_key_store(tmp_path / "wrong", taken.path, "definitely-the-wrong-key-000")
    run = run_verify(pytester, taken.path, keys, *PROCESS_ARGS)
    dom = rendered_dom(run.report)
    (result,) = summary_results(dom)
    assert result.startswith("FAILED: test_manifest_authentic: manifest: key file"), result
    assert f"does not hold encryption key {fingerprint}" in result
    text = visible_text(dom)
    assert text.count("not checked: the manifest is not authentic") == 1
    assert (
        text.count("not run: files failed (see test_files)") == 10
    )  # every other check, pointing there
    assert "definitely-the-wrong-key" not in dom
    shot = screenshot(run.report, tmp_path / "failing.png")
    assert shot.stat().st_size > 10_000
