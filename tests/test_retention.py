"""Retention rules over generated snapshot histories (hypothesis), and prune on a real folder."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from backup.retention import RetentionPolicy, SnapshotInfo, apply_policy, prune

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)

histories = st.lists(
    st.tuples(st.integers(min_value=0, max_value=400 * 24), st.booleans()),
    max_size=60,
    unique_by=lambda item: item[0],
).map(
    lambda items: [
        SnapshotInfo(f"s{hours:06d}", NOW - timedelta(hours=hours), ok) for hours, ok in items
    ]
)
policies = st.builds(
    RetentionPolicy,
    keep_daily=st.integers(0, 40),
    keep_weekly=st.integers(0, 20),
    keep_monthly=st.integers(0, 12),
)


@settings(max_examples=300)
@given(histories, policies)
def test_policy_invariants(snapshots: list[SnapshotInfo], policy: RetentionPolicy) -> None:
    decision = apply_policy(snapshots, policy, NOW)
    kept = {s.name for s in decision.keep}
    removed = {s.name for s in decision.remove}
    assert kept | removed == {s.name for s in snapshots} and not kept & removed
    verified = [s for s in snapshots if s.verified_ok]
    if verified:
        assert max(verified, key=lambda s: s.created).name in kept
    if snapshots:
        assert max(snapshots, key=lambda s: s.created).name in kept
    assert all(decision.reasons[name] for name in kept)


@settings(max_examples=200)
@given(histories)
def test_daily_keeps_one_per_recent_day(snapshots: list[SnapshotInfo]) -> None:
    decision = apply_policy(snapshots, RetentionPolicy(7, 0, 0), NOW)
    recent_days = {s.created.date() for s in snapshots if NOW - s.created <= timedelta(days=7)}
    kept_daily = [s for s in decision.keep if "daily" in decision.reasons[s.name]]
    assert {s.created.date() for s in kept_daily} == recent_days
    assert len(kept_daily) == len(recent_days)


def test_prune_deletes_only_snapshots_inside_the_root(tmp_path: Path) -> None:
    from tests.test_manifest_and_check import build_snapshot  # a real, small snapshot folder

    root = tmp_path / "root"
    root.mkdir()
    old = build_snapshot(root / "old")
    new = build_snapshot(root / "new")
    (root / "new" / "manifest.json").write_text(
        (root / "new" / "manifest.json").read_text().replace(new.created, NOW.isoformat())
    )
    (root / "old" / "manifest.json").write_text(
        (root / "old" / "manifest.json")
        .read_text()
        .replace(old.created, (NOW - timedelta(days=400)).isoformat())
    )
    outside = tmp_path / "outside"
    build_snapshot(outside)
    os.symlink(outside, root / "linked")
    dry = prune(root, RetentionPolicy(30, 13, 0), NOW, dry_run=True)
    assert [s.name for s in dry.remove] == ["old"] and (root / "old").exists()
    done = prune(root, RetentionPolicy(30, 13, 0), NOW, dry_run=False)
    assert [s.name for s in done.remove] == ["old"]
    assert not (root / "old").exists() and (root / "new").exists()
    assert (outside / "manifest.json").exists() and (root / "linked").is_symlink()
