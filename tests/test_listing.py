"""``n8n-backup list`` on real folders: bad manifests are rows, not crashes; nothing raw reaches
the terminal; interrupted snapshots show up."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from backup.cli import main
from backup.listing import INVALID_CREATED, created_time, printable
from backup.manifest import FORMAT_NAME, FORMAT_VERSION, MANIFEST_NAME

# Every kind of `created` that is not an ISO time with a timezone.
BAD_CREATED: list[Any] = [
    "yesterday",
    "2026-11-20T10:00:00",  # no timezone
    20261120,
    None,
    "",
    True,
    ["2026-11-20T10:00:00+00:00"],
]
DATABASE_BYTES = 2048


def manifest_json(snapshot_id: str, created: Any, **overrides: Any) -> dict[str, Any]:
    """A manifest object of the shape the tool writes (format, counts, entries, files)."""
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "snapshot_id": snapshot_id,
        "created": created,
        "source_n8n_version": "2.40.7",
        "database_kind": "sqlite",
        "database_file": "database.sqlite",
        "key_fingerprint": "f" * 32,
        "counts": {"workflows": 1, "credentials": 1, "executions": 2},
        "workflows": [
            {
                "id": "w1",
                "name": "Nightly report",
                "active": True,
                "digest": "sha256:" + "a" * 64,
                "export_file": None,
            }
        ],
        "credentials": [
            {"id": "c1", "name": "Mail", "type": "smtpApi", "digest": "hmac-sha256:" + "b" * 64}
        ],
        "files": [{"path": "database.sqlite", "sha256": "c" * 64, "size": DATABASE_BYTES}],
        "table_prefix": "",
        "database_schema": None,
        "forced_with_running_executions": 0,
        **overrides,
    }


def write_snapshot(root: Path, name: str, created: Any, **overrides: Any) -> Path:
    """A snapshot folder ``root/name``: its manifest.json written directly, and its database."""
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "database.sqlite").write_bytes(b"\0" * DATABASE_BYTES)
    raw = manifest_json(name, created, **overrides)
    (folder / MANIFEST_NAME).write_text(json.dumps(raw, indent=2), encoding="utf-8")
    return folder


def iso(moment: datetime) -> str:
    """``created`` as the tool writes it."""
    return moment.isoformat(timespec="seconds")


def make_incomplete(root: Path, name: str, size: int, age: timedelta) -> Path:
    """An interrupted snapshot whose last write (folder and content) was ``age`` ago."""
    folder = root / name
    folder.mkdir()
    (folder / "database.sqlite").write_bytes(b"\0" * size)
    stamp = (datetime.now(UTC) - age).timestamp()
    os.utime(folder / "database.sqlite", (stamp, stamp))
    os.utime(folder, (stamp, stamp))
    return folder


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def row(out: str, name: str) -> str:
    """The text line of the snapshot listed as ``name`` (escaped as list shows it)."""
    lines = [line for line in out.splitlines() if line.startswith(f"{printable(name)} ")]
    assert len(lines) == 1, out
    return lines[0]


@pytest.mark.parametrize("created", BAD_CREATED, ids=repr)
def test_list_shows_a_bad_created_as_an_invalid_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], created: Any
) -> None:
    now = datetime.now(UTC)
    write_snapshot(tmp_path, "20261119T100000Z-aaaaaa", iso(now - timedelta(days=1)))
    write_snapshot(tmp_path, "20261120T100000Z-bbbbbb", created)
    write_snapshot(tmp_path, "20261121T100000Z-cccccc", iso(now))

    code, out, err = run(["list", str(tmp_path)], capsys)
    assert code == 0 and err == "" and "Traceback" not in out
    # The strict manifest reader may refuse the manifest first: either way a row says why.
    bad = row(out, "20261120T100000Z-bbbbbb")
    assert INVALID_CREATED in bad or ("unreadable manifest" in bad and "created" in bad)
    assert row(out, "20261119T100000Z-aaaaaa").endswith(" ok")
    assert row(out, "20261121T100000Z-cccccc").endswith(" ok")

    code, out, err = run(["list", str(tmp_path), "--json"], capsys)
    assert code == 0 and err == ""
    items = {item["snapshot_id"]: item for item in json.loads(out)}
    assert len(items) == 3
    assert items["20261120T100000Z-bbbbbb"]["state"] == "invalid"
    assert "created" in items["20261120T100000Z-bbbbbb"]["problem"]
    assert items["20261119T100000Z-aaaaaa"]["problem"] is None
    assert items["20261121T100000Z-cccccc"]["workflows"] == 1


def test_list_shows_an_unreadable_manifest_as_a_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = write_snapshot(tmp_path, "20261120T100000Z-bbbbbb", iso(datetime.now(UTC)))
    (broken / MANIFEST_NAME).write_text("{not json", encoding="utf-8")
    write_snapshot(tmp_path, "20261121T100000Z-cccccc", iso(datetime.now(UTC)))
    code, out, _ = run(["list", str(tmp_path)], capsys)
    assert code == 0
    assert "unreadable manifest: cannot read" in row(out, "20261120T100000Z-bbbbbb")
    assert row(out, "20261121T100000Z-cccccc").endswith(" ok")


def test_future_dated_snapshot_is_listed_as_such(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    now = datetime.now(UTC)
    write_snapshot(tmp_path, "20261120T100000Z-aaaaaa", iso(now - timedelta(hours=3)))
    write_snapshot(tmp_path, "20991231T000000Z-ffffff", iso(now + timedelta(days=2)))
    write_snapshot(tmp_path, "20261120T110000Z-bbbbbb", iso(now + timedelta(minutes=30)))
    code, out, _ = run(["list", str(tmp_path)], capsys)
    assert code == 0
    assert row(out, "20991231T000000Z-ffffff").endswith(" created in the future")
    assert row(out, "20261120T110000Z-bbbbbb").endswith(" ok")  # within the clock tolerance
    code, out, _ = run(["list", str(tmp_path), "--json"], capsys)
    states = {item["snapshot_id"]: (item["state"], item["problem"]) for item in json.loads(out)}
    assert states["20991231T000000Z-ffffff"] == ("future", "created in the future")
    assert states["20261120T100000Z-aaaaaa"] == ("ok", None)


def test_incomplete_folders_are_listed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_snapshot(tmp_path, "20261120T100000Z-aaaaaa", iso(datetime.now(UTC)))
    make_incomplete(tmp_path, ".incomplete-20261119T100000Z-dddddd", 1000, timedelta(hours=30))
    (tmp_path / ".incomplete-not-a-folder").write_text("x")
    code, out, _ = run(["list", str(tmp_path)], capsys)
    assert code == 0
    line = row(out, ".incomplete-20261119T100000Z-dddddd")
    assert line.endswith("incomplete (interrupted snapshot), 1000 bytes, 30h old")
    assert ".incomplete-not-a-folder" not in out
    code, out, _ = run(["list", str(tmp_path), "--json"], capsys)
    items = {item["snapshot_id"]: item for item in json.loads(out)}
    incomplete = items[".incomplete-20261119T100000Z-dddddd"]
    assert incomplete["state"] == "incomplete" and incomplete["size_bytes"] == 1000
    assert incomplete["age_hours"] == pytest.approx(30, abs=0.2)
    assert incomplete["problem"].startswith("incomplete (interrupted snapshot), 1000 bytes")


HOSTILE = "\x1b]0;pwned\x07"
CLEAR = "\x1b[2J"


def test_list_escapes_terminal_sequences(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    now = iso(datetime.now(UTC))
    folder = write_snapshot(tmp_path, "20261120T100000Z-aaaaaa", now, source_n8n_version=CLEAR)
    raw = json.loads((folder / MANIFEST_NAME).read_text())
    raw["snapshot_id"] = HOSTILE
    (folder / MANIFEST_NAME).write_text(json.dumps(raw))
    write_snapshot(tmp_path, f"evil{CLEAR}name", "yesterday")  # a folder name holding escapes
    code, out, _ = run(["list", str(tmp_path)], capsys)
    assert code == 0
    assert "\x1b" not in out and "\x07" not in out
    assert "evil\\x1b[2Jname" in out
    # Shown escaped in its row, or refused by the manifest reader (whose message escapes too).
    assert "\\x1b]0;pwned\\x07" in out or "unreadable manifest" in row(
        out, "20261120T100000Z-aaaaaa"
    )

    code, out, _ = run(["list", str(tmp_path), "--json"], capsys)
    assert "\x1b" not in out and "\x07" not in out
    ids = {item["snapshot_id"] for item in json.loads(out)}
    assert f"evil{CLEAR}name" in ids  # JSON escapes, and gives the exact value back


def test_printable_escapes_control_characters_only() -> None:
    assert printable("Ünïcödé ✓ 工作流 v1.2") == "Ünïcödé ✓ 工作流 v1.2"
    assert printable(HOSTILE) == "\\x1b]0;pwned\\x07"
    assert printable("a\nb\tc\x7f\u202e\U000e0001") == "a\\x0ab\\x09c\\x7f\\u202e\\U000e0001"


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("2026-11-20T10:00:00+00:00", True),
        ("2026-11-20T10:00:00Z", True),
        ("2026-11-20T10:00:00-05:30", True),
        ("0001-01-01T00:00:00+05:00", False),  # out of range once in UTC
        *((value, False) for value in BAD_CREATED),
        ({"at": "2026-11-20T10:00:00+00:00"}, False),
    ],
    ids=repr,
)
def test_created_time_accepts_only_iso_times_with_a_timezone(value: Any, valid: bool) -> None:
    moment = created_time(value)
    assert (moment is not None) == valid
    assert moment is None or moment.utcoffset() is not None
