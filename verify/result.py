"""The machine-readable result of a verify run: ``verify-<time>.json`` beside the HTML report,
one entry per snapshot and target, in the shape ``result.schema.json`` documents (and the same
per-target fields ``n8n-backup list`` reads from each snapshot's record)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from backup.about import tool_version
from backup.atomic import write_text_atomic
from backup.notify import Outcome
from backup.verification_record import TargetResult

SCHEMA = "n8n-restore-verify/verify-result"
SCHEMA_VERSION = 1
SCHEMA_FILE = Path(__file__).with_name("result.schema.json")


def result_path(html_report: Path) -> Path:
    """Where the result of the run that writes ``html_report`` goes."""
    return html_report.with_suffix(".json")


def write_result(
    html_report: Path,
    junit_report: Path | None,
    verified_at: str,
    targets: dict[tuple[str, Path], list[TargetResult]],
) -> Path:
    """Write the run's result atomically (0600); ``targets`` by (snapshot id, folder)."""
    entries = [
        {"snapshot_id": snapshot_id, "snapshot_folder": str(folder), **asdict(target)}
        for (snapshot_id, folder), results in targets.items()
        for target in results
    ]
    body = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "tool_version": tool_version(),
        "verified_at": verified_at,
        "report": str(html_report),
        "junit": str(junit_report) if junit_report else None,
        "verdict": verdict_of([entry["result"] for entry in entries]),
        "entries": entries,
    }
    path = result_path(html_report)
    write_text_atomic(path, json.dumps(body, indent=2, ensure_ascii=False) + "\n")
    return path


def run_outcome(targets: dict[tuple[str, Path], list[TargetResult]], report: str) -> Outcome:
    """What notifications say about a run: its verdict, and for each snapshot and target that
    did not pass, its first cause."""
    results = [target for found in targets.values() for target in found]
    verdict = verdict_of([target.result for target in results])
    failing = [
        f"{snapshot_id}@{target.target_version}: {target.result}"
        + (f" ({target.causes[0]})" if target.causes else "")
        for (snapshot_id, _), found in targets.items()
        for target in found
        if target.result != "PASSED"
    ]
    summary = f"{verdict}: {len(results)} snapshot/target pair(s) verified" + (
        f"; {'; '.join(failing[:5])}" if failing else ""
    )
    details = {
        "report": report,
        "entries": [
            {
                "snapshot_id": snapshot_id,
                "target_version": target.target_version,
                "result": target.result,
                "causes": target.causes,
            }
            for (snapshot_id, _), found in targets.items()
            for target in found
        ],
    }
    return Outcome("verify", verdict == "PASSED", summary, details)


def verdict_of(results: list[object]) -> str:
    """A run's verdict from its pairs' results: FAILED if one failed, PASSED if all passed."""
    if not results:
        return "NOT RUN"
    if any(result == "FAILED" for result in results):
        return "FAILED"
    return "PASSED" if all(result == "PASSED" for result in results) else "PARTIAL"
