"""A minor upgrade rehearsal: a snapshot of an earlier n8n 2.x, with the real-workflow corpus,
verified on the default 2.x, and what the report says about it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backup.manifest import Manifest
from backup.n8n import npm
from tests.cli_support import run_snapshot_cli
from tests.docker_support import PROCESS_ARGS
from tests.n8n_support import process_source_args, seed, start_source
from tests.verify_runner import VERIFY_CHECKS, run_verify

# An earlier 2.x release that installs from the registry here (scripts/test.sh installs it).
EARLIER_2X = "2.39.10"


@pytest.fixture(scope="module")
def earlier(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A snapshot of an n8n EARLIER_2X with the corpus, and its key store."""
    base = tmp_path_factory.mktemp("earlier")
    source = start_source(npm.install(EARLIER_2X, log=False), base / "n8n")
    try:
        seed(source.api, corpus=True, generated=2)
        path = run_snapshot_cli(
            source.api_key, base / "snapshots", base / "keys", *process_source_args(source)
        )
    finally:
        source.api.close()
        source.process.close()
    assert Manifest.load(path).source_n8n_version == EARLIER_2X
    return path, base / "keys"


def test_minor_upgrade_rehearsal_passes_and_reports_the_upgrade(
    pytester: pytest.Pytester, earlier: tuple[Path, Path]
) -> None:
    path, keys = earlier

    target = npm.DEFAULT_N8N_VERSION
    run = run_verify(
        pytester,
        path,
        keys,
        "--n8n-version",
        target,
        "--quiet-seconds",
        "2",
        *PROCESS_ARGS,
    )

    assert run.failures == {}
    run.result.assert_outcomes(passed=VERIFY_CHECKS)
    text = run.report.read_text(encoding="utf-8")
    assert (
        f'<td data-label="source n8n">{EARLIER_2X}</td><td data-label="target n8n">{target}</td>'
        in text
    )
    record = json.loads((path.parent / f"{path.name}.verified.json").read_text())
    (result,) = record["targets"]
    assert result["target_version"] == target and result["result"] == "PASSED"
    # Whatever the migrations between the two did is in the record (nothing, if none ran).
    assert isinstance(result["upgrade_changes"], dict)


_INODE_PROBE = """
import json, os
from pathlib import Path

def pytest_runtest_call(item):
    (folder,) = [p for p in Path(item.config.getoption("snapshots")).iterdir() if p.is_dir()]
    with open(os.environ["PROBE_LOG"], "a") as log:
        entry = {"at": item.nodeid, "inode": folder.stat().st_ino, "files": len(os.listdir(folder))}
        log.write(json.dumps(entry) + "\\n")
"""


def test_a_snapshot_from_a_repository_is_fetched_once_for_two_targets(
    pytester: pytest.Pytester,
    earlier: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """verify --repo on the snapshot's own version and on the next: the two groups follow one
    another and share one fetch of its files (the folder is the same one throughout)."""
    from backup.repository import snapshots as stored
    from backup.repository.restic import Password, ResticRepository

    path, keys = earlier
    password = tmp_path / "repo-password"
    password.write_text("two targets, one fetch\n")
    password.chmod(0o600)
    repo = ResticRepository(str(tmp_path / "repository"), Password(file=password))
    repo.init()
    stored.store(repo, path, lambda message: None)
    log = tmp_path / "probe.log"
    monkeypatch.setenv("PROBE_LOG", str(log))
    pytester.makepyfile(probe=_INODE_PROBE)
    run = run_verify(
        pytester, None, keys, "--repo", repo.location, "--repo-password-file",
        str(password), "--n8n-version", f"{EARLIER_2X},{npm.DEFAULT_N8N_VERSION}",
        "--quiet-seconds", "1", "-p", "probe", *PROCESS_ARGS,
    )  # fmt: skip
    assert run.failures == {}
    run.result.assert_outcomes(passed=2 * VERIFY_CHECKS, deselected=2)
    seen = [json.loads(line) for line in log.read_text().splitlines()]
    assert {entry["at"].split("[")[1] for entry in seen} == {
        f"{path.name}@{EARLIER_2X}]",
        f"{path.name}@{npm.DEFAULT_N8N_VERSION}]",
    }
    whole = len(list(path.iterdir()))
    assert {(entry["inode"], entry["files"]) for entry in seen} == {(seen[0]["inode"], whole)}
