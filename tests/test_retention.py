"""Retention rules over generated snapshot histories (hypothesis), and prune on a real folder."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backup.errors import InputError
from backup.listing import FUTURE_TOLERANCE
from backup.manifest import MANIFEST_NAME
from backup.retention import RetentionPolicy, SnapshotInfo, apply_policy, prune
from tests.test_listing import BAD_CREATED, iso, make_incomplete, run, write_snapshot

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
FUTURE = "created in the future"

# Minutes before NOW; negative ones are in the future, some within the clock tolerance.
histories = st.lists(
    st.tuples(st.integers(min_value=-3 * 24 * 60, max_value=400 * 24 * 60), st.booleans()),
    max_size=60,
    unique_by=lambda item: item[0],
).map(
    lambda items: [
        SnapshotInfo(f"s{minutes:+07d}", NOW - timedelta(minutes=minutes), ok)
        for minutes, ok in items
    ]
)
policies = st.builds(
    RetentionPolicy,
    keep_daily=st.integers(0, 40),
    keep_weekly=st.integers(0, 20),
    keep_monthly=st.integers(0, 12),
)


def in_future(snapshot: SnapshotInfo) -> bool:
    return snapshot.created - NOW > FUTURE_TOLERANCE


@settings(max_examples=300)
@given(histories, policies)
def test_policy_invariants(snapshots: list[SnapshotInfo], policy: RetentionPolicy) -> None:
    decision = apply_policy(snapshots, policy, NOW)
    kept = {s.name for s in decision.keep}
    removed = {s.name for s in decision.remove}
    assert kept | removed == {s.name for s in snapshots} and not kept & removed
    assert all(decision.reasons[name] for name in kept)
    # Future-dated: kept, for that reason alone (not newest, not in any bucket).
    for snapshot in filter(in_future, snapshots):
        assert decision.reasons[snapshot.name] == [FUTURE]
    judged = [s for s in snapshots if not in_future(s)]
    verified = [s for s in judged if s.verified_ok]
    if verified:
        assert "newest verified" in decision.reasons[max(verified, key=lambda s: s.created).name]
    if judged:
        assert "newest" in decision.reasons[max(judged, key=lambda s: s.created).name]
    assert sum("newest" in reasons for reasons in decision.reasons.values()) == bool(judged)


@settings(max_examples=200)
@given(histories)
def test_daily_keeps_one_per_recent_day(snapshots: list[SnapshotInfo]) -> None:
    decision = apply_policy(snapshots, RetentionPolicy(7, 0, 0), NOW)
    recent_days = {
        s.created.date()
        for s in snapshots
        if not in_future(s) and NOW - s.created <= timedelta(days=7)
    }
    kept_daily = [s for s in decision.keep if "daily" in decision.reasons[s.name]]
    assert {s.created.date() for s in kept_daily} == recent_days
    assert len(kept_daily) == len(recent_days)


def test_future_dated_never_takes_newest() -> None:
    snapshots = [
        SnapshotInfo("old-ok", NOW - timedelta(days=3), True),
        SnapshotInfo("today", NOW - timedelta(hours=1), False),
        SnapshotInfo("soon", NOW + timedelta(minutes=30), False),  # clock skew: counts
        SnapshotInfo("forged", NOW + timedelta(days=365), True),
    ]
    decision = apply_policy(snapshots, RetentionPolicy(0, 0, 0), NOW)
    assert decision.reasons == {
        "soon": ["newest"],
        "old-ok": ["newest verified"],
        "forged": [FUTURE],
    }
    assert [s.name for s in decision.remove] == ["today"]


def test_policy_refuses_negative_counts() -> None:
    with pytest.raises(InputError, match="0 or more"):
        RetentionPolicy(keep_daily=-1)


@pytest.mark.parametrize("flag", ["--keep-daily", "--keep-weekly", "--keep-monthly"])
@pytest.mark.parametrize("value", ["-1", "-30", "two"])
def test_negative_keep_values_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str
) -> None:
    write_snapshot(tmp_path, "20261120T100000Z-aaaaaa", iso(datetime.now(UTC)))
    with pytest.raises(SystemExit) as exit_info:
        run(["prune", str(tmp_path), flag, value], capsys)
    out, err = capsys.readouterr()
    assert exit_info.value.code == 2 and out == "" and "Traceback" not in err
    # argparse's usage line, then one line that names the option and the rule.
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0] == err.splitlines()[-1], err
    assert flag in errors[0] and "0 or more" in errors[0]
    assert (tmp_path / "20261120T100000Z-aaaaaa").exists()


def _store(root: Path) -> None:
    """An old snapshot the policy lets go and a recent one it keeps."""
    now = datetime.now(UTC)
    write_snapshot(root, "20250101T000000Z-aaaaaa", iso(now - timedelta(days=400)))
    write_snapshot(root, "20261120T100000Z-cccccc", iso(now - timedelta(hours=2)))


@pytest.mark.parametrize("created", BAD_CREATED, ids=repr)
def test_prune_keeps_a_snapshot_with_a_bad_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], created: Any
) -> None:
    _store(tmp_path)
    write_snapshot(tmp_path, "20240101T000000Z-bbbbbb", created)
    for argv in (["--dry-run"], []):
        code, out, err = run(["prune", str(tmp_path), *argv], capsys)
        assert code == 0 and err == "" and "Traceback" not in out
        bad = [line for line in out.splitlines() if "20240101T000000Z-bbbbbb" in line]
        assert len(bad) == 1 and bad[0].startswith("keep 20240101T000000Z-bbbbbb (")
        assert "manifest" in bad[0] and "created" in bad[0]
        assert "keep 20261120T100000Z-cccccc (daily, weekly, newest)" in out
    assert "removed 20250101T000000Z-aaaaaa" in out
    assert (tmp_path / "20240101T000000Z-bbbbbb" / MANIFEST_NAME).exists()
    assert not (tmp_path / "20250101T000000Z-aaaaaa").exists()


def test_prune_keeps_an_unreadable_manifest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _store(tmp_path)
    broken = write_snapshot(tmp_path, "20240101T000000Z-bbbbbb", "2024-01-01T00:00:00+00:00")
    (broken / MANIFEST_NAME).write_text("[1, 2")
    code, out, _ = run(["prune", str(tmp_path)], capsys)
    assert code == 0
    assert "keep 20240101T000000Z-bbbbbb (unreadable manifest: cannot read " in out
    assert (broken / MANIFEST_NAME).exists()


def test_prune_future_dated_folder_does_not_take_newest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _store(tmp_path)
    write_snapshot(tmp_path, "20991231T000000Z-ffffff", iso(datetime.now(UTC) + timedelta(days=2)))
    code, out, _ = run(["prune", str(tmp_path), "--keep-daily", "0", "--keep-weekly", "0"], capsys)
    assert code == 0
    assert "keep 20991231T000000Z-ffffff (created in the future)" in out
    assert "keep 20261120T100000Z-cccccc (newest)" in out
    assert "removed 20250101T000000Z-aaaaaa" in out
    assert (tmp_path / "20991231T000000Z-ffffff").exists()


def test_prune_removes_interrupted_snapshots_older_than_a_day(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    _store(root)
    stale = make_incomplete(root, ".incomplete-20261101T000000Z-dddddd", 1000, timedelta(hours=30))
    fresh = make_incomplete(root, ".incomplete-20261126T000000Z-eeeeee", 10, timedelta(hours=2))
    # The folder's own mtime is old, but its database copy is still being written.
    growing = make_incomplete(root, ".incomplete-20261125T000000Z-gggggg", 10, timedelta(hours=30))
    os.utime(growing / "database.sqlite")
    outside = make_incomplete(tmp_path, ".incomplete-outside", 10, timedelta(days=9))
    os.symlink(outside, root / ".incomplete-linked")

    code, out, _ = run(["prune", str(root), "--dry-run"], capsys)
    assert code == 0
    assert (
        "would remove .incomplete-20261101T000000Z-dddddd "
        "(interrupted snapshot, 1000 bytes, last written 30h ago)"
    ) in out
    assert "keep .incomplete-20261126T000000Z-eeeeee (interrupted snapshot" in out
    assert "keep .incomplete-20261125T000000Z-gggggg (interrupted snapshot" in out
    assert ".incomplete-linked" not in out and stale.exists()

    code, out, _ = run(["prune", str(root)], capsys)
    assert code == 0 and "removed .incomplete-20261101T000000Z-dddddd" in out
    assert not stale.exists() and fresh.exists() and growing.exists()
    assert (root / ".incomplete-linked").is_symlink() and (outside / "database.sqlite").exists()


def test_prune_escapes_folder_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _store(tmp_path)
    write_snapshot(tmp_path, "evil\x1b]0;pwned\x07", "yesterday")
    make_incomplete(tmp_path, ".incomplete-\x1b[2J", 10, timedelta(days=2))
    code, out, _ = run(["prune", str(tmp_path), "--dry-run"], capsys)
    assert code == 0 and "\x1b" not in out and "\x07" not in out
    assert "keep evil\\x1b]0;pwned\\x07 (" in out
    assert "would remove .incomplete-\\x1b[2J (" in out


def test_prune_deletes_only_snapshots_inside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    write_snapshot(root, "old", iso(NOW - timedelta(days=400)))
    write_snapshot(root, "new", iso(NOW))
    outside = tmp_path / "outside"
    write_snapshot(outside, "old-outside", iso(NOW - timedelta(days=400)))
    os.symlink(outside / "old-outside", root / "linked")
    dry = prune(root, RetentionPolicy(30, 13, 0), NOW, dry_run=True)
    assert [s.name for s in dry.decision.remove] == ["old"] and (root / "old").exists()
    done = prune(root, RetentionPolicy(30, 13, 0), NOW, dry_run=False)
    assert [s.name for s in done.decision.remove] == ["old"]
    assert not (root / "old").exists() and (root / "new").exists()
    assert (outside / "old-outside" / MANIFEST_NAME).exists() and (root / "linked").is_symlink()
